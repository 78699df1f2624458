//! The admin API through `tower::ServiceExt::oneshot`, on the in-memory backends.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate_admin::AdminService;
use tollgate_auth::{InMemoryKeyStore, KeyDigest, KeyStore};
use tollgate_balance::{InMemoryLedger, Ledger, ReservationId};
use tower::ServiceExt;

const ADMIN: &str = "adm-0123456789abcdef0123456789";

fn admin(
    keys: &InMemoryKeyStore,
    ledger: &InMemoryLedger,
) -> AdminService<InMemoryKeyStore, InMemoryLedger> {
    AdminService::new(keys.clone(), ledger.clone())
        .admin_key("ops", ADMIN)
        .key_prefix("sk-test-")
        .on_reload(|| async { Err::<String, _>("catalog: gpt-9 has no context_window".to_owned()) })
}

async fn call(
    service: &AdminService<InMemoryKeyStore, InMemoryLedger>,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
    let response = service
        .clone()
        .oneshot(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_key_is_issued_listed_changed_and_revoked() {
    let (keys, ledger) = (InMemoryKeyStore::new(), InMemoryLedger::new());
    let service = admin(&keys, &ledger);
    let new = json!({"id": "key_alice", "account": "acct_alice", "models": ["gpt-5.4"], "requests_per_minute": 60});
    let (status, _, created) = call(
        &service,
        Method::POST,
        "/admin/keys",
        Some(ADMIN),
        Some(new),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-test-") && key.len() == "sk-test-".len() + 48);
    assert_eq!(created["requests_per_minute"], 60);
    // Only the digest is kept, and it works for lookups at once.
    let record = keys.lookup(&KeyDigest::of(&key)).await.unwrap().unwrap();
    assert_eq!(record.principal.key_id(), "key_alice");

    let (status, _, listed) = call(&service, Method::GET, "/admin/keys", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], "key_alice");
    assert!(
        !listed.to_string().contains(&key),
        "never the secret: {listed}"
    );

    let change =
        json!({"models": null, "tokens_per_minute": 1000, "spend_caps": ["5000000/month"]});
    let (status, _, changed) = call(
        &service,
        Method::PATCH,
        "/admin/keys/key_alice",
        Some(ADMIN),
        Some(change),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["models"], Value::Null, "every model now");
    assert_eq!(changed["requests_per_minute"], 60, "unchanged");
    assert_eq!(changed["tokens_per_minute"], 1000);
    assert_eq!(changed["spend_caps"], json!(["5000000/month"]));
    let bad_cap = json!({"spend_caps": ["lots/forever"]});
    let (status, _, error) = call(
        &service,
        Method::PATCH,
        "/admin/keys/key_alice",
        Some(ADMIN),
        Some(bad_cap),
    )
    .await;
    assert_eq!(
        (status, error["error"]["param"].clone()),
        (400, json!("spend_caps"))
    );

    let (status, _, revoked) = call(
        &service,
        Method::POST,
        "/admin/keys/key_alice/revoke",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!((status, revoked["revoked"].clone()), (200, json!(true)));
    assert!(
        keys.lookup(&KeyDigest::of(&key))
            .await
            .unwrap()
            .unwrap()
            .revoked
    );

    let duplicate = json!({"id": "key_alice", "account": "acct_alice"});
    let (status, _, error) = call(
        &service,
        Method::POST,
        "/admin/keys",
        Some(ADMIN),
        Some(duplicate),
    )
    .await;
    assert_eq!(
        (status, error["error"]["param"].clone()),
        (400, json!("id"))
    );
    let (status, _, error) = call(
        &service,
        Method::POST,
        "/admin/keys/key_nobody/revoke",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (status, error["error"]["type"].clone()),
        (404, json!("not_found"))
    );
}

#[tokio::test]
async fn an_account_is_topped_up_and_shows_what_it_holds() {
    let (keys, ledger) = (InMemoryKeyStore::new(), InMemoryLedger::new());
    let service = admin(&keys, &ledger);
    let (status, _, topped) = call(
        &service,
        Method::POST,
        "/admin/accounts/acct_1/top-up",
        Some(ADMIN),
        Some(json!({"amount": 1_000})),
    )
    .await;
    assert_eq!((status, topped["balance"].clone()), (200, json!(1_000)));
    let account: Arc<str> = Arc::from("acct_1");
    let held = ledger
        .reserve(ReservationId::new(), &account, 300)
        .await
        .unwrap();
    let (status, _, view) = call(
        &service,
        Method::GET,
        "/admin/accounts/acct_1",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(view["balance"], 700);
    assert_eq!(
        view["reservations"],
        json!([{"id": held.id.to_string(), "amount": 300}])
    );
    let (status, _, error) = call(
        &service,
        Method::POST,
        "/admin/accounts/acct_1/top-up",
        Some(ADMIN),
        Some(json!({"amount": -5})),
    )
    .await;
    assert_eq!(
        (status, error["error"]["type"].clone()),
        (400, json!("invalid_request_error"))
    );
}

#[tokio::test]
async fn every_call_needs_an_admin_key_and_a_known_route() {
    let (keys, ledger) = (InMemoryKeyStore::new(), InMemoryLedger::new());
    let service = admin(&keys, &ledger);
    for token in [None, Some("adm-wrong"), Some("")] {
        let (status, _, error) = call(&service, Method::GET, "/admin/keys", token, None).await;
        assert_eq!(
            (status, error["error"]["code"].clone()),
            (401, json!("invalid_admin_key"))
        );
    }
    let (status, _, _) = call(&service, Method::GET, "/admin/nothing", Some(ADMIN), None).await;
    assert_eq!(status, 404);
    let (status, headers, _) =
        call(&service, Method::DELETE, "/admin/keys", Some(ADMIN), None).await;
    assert_eq!(
        (status, headers["allow"].to_str().unwrap()),
        (405, "GET, POST")
    );
    let (status, _, error) = call(&service, Method::POST, "/admin/reload", Some(ADMIN), None).await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-9"),
        "the reasons: {error}"
    );
    let unknown_field = json!({"id": "k", "account": "a", "admin": true});
    let (status, _, _) = call(
        &service,
        Method::POST,
        "/admin/keys",
        Some(ADMIN),
        Some(unknown_field),
    )
    .await;
    assert_eq!(status, 400);
}
