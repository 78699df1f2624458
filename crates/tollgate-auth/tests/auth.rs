//! BearerAuthLayer through `oneshot`: every failure, every source, revocation in flight.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_auth::{BearerAuthLayer, InMemoryKeyStore, KeyDigest, KeyRecord, KeyStore};
use tollgate_core::{Body, BoxError, Principal};
use tower::{Service, ServiceBuilder, ServiceExt};

const GOOD: &str = "sk-llmaai-good-0000000001";
const REVOKED: &str = "sk-llmaai-revoked-00000002";
const EXPIRED: &str = "sk-llmaai-expired-00000003";

fn store() -> InMemoryKeyStore {
    let store = InMemoryKeyStore::new().with_key(
        GOOD,
        Principal::new("key_good", "acct_1").with_allowed_models(["gpt-5.4"]),
    );
    store.insert_record(
        KeyDigest::of(REVOKED),
        KeyRecord::new(Principal::new("key_revoked", "acct_1")).revoked(),
    );
    store.insert_record(
        KeyDigest::of(EXPIRED),
        KeyRecord::new(Principal::new("key_expired", "acct_1"))
            .expires_at(SystemTime::now() - Duration::from_secs(1)),
    );
    store
}

/// Answers with the principal's key id, so tests see what reached the inner service.
async fn echo_principal(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let principal = request.extensions().get::<Principal>().cloned();
    Ok(Response::new(Body::from(
        principal.map_or("none".to_owned(), |p| p.key_id().to_owned()),
    )))
}

async fn call<K: KeyStore>(
    layer: BearerAuthLayer<K>,
    headers: &[(&str, &[u8])],
) -> (u16, http::HeaderMap, String) {
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(echo_principal);
    let mut request = Request::builder().uri("/v1/chat/completions");
    for (name, value) in headers {
        request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
    }
    let response = service
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn every_failure_is_a_401_that_says_what_to_fix() {
    let how = "`Authorization: Bearer YOUR_API_KEY`";
    let whitespace = format!(
        "The API key has whitespace around it. Remove the spaces, tabs or line breaks before and after the key: {how}, with exactly one space after `Bearer`."
    );
    /// A case's name, its request headers and the message it must get.
    type Case = (&'static str, Vec<(&'static str, &'static [u8])>, String);
    let cases: Vec<Case> = vec![
        ("missing", vec![], format!("Missing API key. Send it in the Authorization header: {how}.")),
        (
            "basic scheme",
            vec![("authorization", b"Basic dXNlcjpwYXNz")],
            format!("The Authorization header uses the `Basic` scheme, which this API does not accept. Send the key as {how}."),
        ),
        (
            "odd scheme is not echoed",
            vec![("authorization", b"<script> x")],
            format!("The Authorization header uses a scheme this API does not accept. Send the key as {how}."),
        ),
        (
            "no scheme",
            vec![("authorization", GOOD.as_bytes())],
            format!("The Authorization header holds a value without the `Bearer` scheme. Send the key as {how}."),
        ),
        ("bearer alone", vec![("authorization", b"Bearer")], format!("The Authorization header has no API key after `Bearer`. Send the key as {how}.")),
        ("bearer and spaces", vec![("authorization", b"Bearer   ")], format!("The Authorization header has no API key after `Bearer`. Send the key as {how}.")),
        ("two spaces", vec![("authorization", b"Bearer  sk-llmaai-good-0000000001")], whitespace.clone()),
        ("trailing tab", vec![("authorization", b"Bearer sk-llmaai-good-0000000001\t")], whitespace.clone()),
        ("tab separator", vec![("authorization", b"Bearer\tsk-llmaai-good-0000000001")], whitespace.clone()),
        ("leading space", vec![("authorization", b" Bearer sk-llmaai-good-0000000001")], whitespace.clone()),
        (
            "two keys",
            vec![("authorization", b"Bearer sk-llmaai-a sk-llmaai-b")],
            "The API key is malformed: it holds spaces or characters that API keys never contain. Copy the key again from where it was issued.".to_owned(),
        ),
        (
            "not visible ascii",
            vec![("authorization", b"Bearer sk-llmaai-\xff\xfe")],
            "The API key is malformed: it holds spaces or characters that API keys never contain. Copy the key again from where it was issued.".to_owned(),
        ),
        (
            "wrong prefix",
            vec![("authorization", b"Bearer sk-proj-0000000000000001")],
            "The API key is malformed: keys for this API start with `sk-llmaai-`. Check that you are using a key issued for this API.".to_owned(),
        ),
        (
            "unknown",
            vec![("authorization", b"Bearer sk-llmaai-unknown-000000009")],
            "Invalid API key. Check that it was copied completely, or create a new key.".to_owned(),
        ),
        // Which of two a proxy in front or the provider would read is anyone's guess.
        (
            "two authorization headers",
            vec![("authorization", b"Bearer sk-llmaai-good-0000000001"), ("authorization", b"Bearer sk-llmaai-other-00000001")],
            format!("The request has more than one `authorization` header. Send the API key once, as {how}."),
        ),
        (
            "the same key twice",
            vec![("authorization", b"Bearer sk-llmaai-good-0000000001"), ("authorization", b"Bearer sk-llmaai-good-0000000001")],
            format!("The request has more than one `authorization` header. Send the API key once, as {how}."),
        ),
        ("revoked", vec![("authorization", b"Bearer sk-llmaai-revoked-00000002")], "This API key was revoked. Create a new key.".to_owned()),
        ("expired", vec![("authorization", b"Bearer sk-llmaai-expired-00000003")], "This API key has expired. Create a new key.".to_owned()),
    ];
    for (name, headers, message) in cases {
        let layer = BearerAuthLayer::new(store()).required_prefix("sk-llmaai-");
        let (status, response_headers, body) = call(layer, &headers).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(response_headers["www-authenticate"], "Bearer", "{name}");
        assert_eq!(
            response_headers["content-type"], "application/json",
            "{name}"
        );
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["type"], "auth_error", "{name}");
        assert_eq!(json["error"]["code"], "invalid_api_key", "{name}");
        assert_eq!(json["error"]["message"], message.as_str(), "{name}");
        for (_, value) in &headers {
            let sent = String::from_utf8_lossy(value);
            if let Some(key) = sent.split_whitespace().find(|part| part.starts_with("sk-")) {
                assert!(!body.contains(key), "{name}: the key is echoed back");
            }
        }
    }
}

#[tokio::test]
async fn a_valid_key_reaches_the_inner_service_with_its_principal() {
    let bearer = format!("Bearer {GOOD}");
    let (status, headers, body) = call(
        BearerAuthLayer::new(store()),
        &[("authorization", bearer.as_bytes())],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "key_good"));
    assert!(headers.get("www-authenticate").is_none());
    // The scheme is case-insensitive (RFC 7235).
    let bearer = format!("bearer {GOOD}");
    let (status, _, _) = call(
        BearerAuthLayer::new(store()),
        &[("authorization", bearer.as_bytes())],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn optional_sources_raw_authorization_and_named_headers() {
    let raw = BearerAuthLayer::new(store()).allow_raw_authorization();
    assert_eq!(
        call(raw.clone(), &[("authorization", GOOD.as_bytes())])
            .await
            .2,
        "key_good"
    );
    assert_eq!(
        call(
            raw,
            &[("authorization", format!("Bearer {GOOD}").as_bytes())]
        )
        .await
        .2,
        "key_good"
    );

    let header =
        BearerAuthLayer::new(store()).key_header(http::HeaderName::from_static("x-api-key"));
    assert_eq!(
        call(header.clone(), &[("x-api-key", GOOD.as_bytes())])
            .await
            .2,
        "key_good"
    );
    let (status, _, body) = call(header.clone(), &[("x-api-key", b"")]).await;
    assert_eq!(status, 401);
    assert!(body.contains("The `x-api-key` header is empty."), "{body}");
    let (_, _, body) = call(header.clone(), &[]).await;
    assert!(body.contains("(or in the `x-api-key` header)"), "{body}");
    let (status, _, body) = call(
        header.clone(),
        &[
            ("x-api-key", GOOD.as_bytes()),
            ("x-api-key", GOOD.as_bytes()),
        ],
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.contains("more than one `x-api-key` header"), "{body}");
    // Authorization wins when both are present.
    let (status, _, _) = call(
        header,
        &[
            ("authorization", b"Bearer sk-llmaai-unknown-1"),
            ("x-api-key", GOOD.as_bytes()),
        ],
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_failing_store_is_a_503() {
    struct Down;
    impl KeyStore for Down {
        type Future = std::future::Ready<Result<Option<KeyRecord>, BoxError>>;
        fn lookup(&self, _: &KeyDigest) -> Self::Future {
            std::future::ready(Err("connection refused".into()))
        }
    }
    let (status, headers, body) = call(
        BearerAuthLayer::new(Down),
        &[("authorization", b"Bearer sk-anything")],
    )
    .await;
    assert_eq!(status, 503);
    assert!(headers.get("www-authenticate").is_none());
    assert!(body.contains("\"type\":\"service_unavailable\""), "{body}");
    assert!(!body.contains("refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_while_requests_are_in_flight_rejects_the_next_request() {
    let store = store();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(store.clone()))
        .service_fn({
            let gate = gate.clone();
            move |request: Request<Body>| {
                let gate = gate.clone();
                async move {
                    // Hold the request until the test lets it finish.
                    gate.acquire().await.unwrap().forget();
                    echo_principal(request).await
                }
            }
        });
    let request = || {
        Request::builder()
            .header("authorization", format!("Bearer {GOOD}"))
            .body(Body::empty())
            .unwrap()
    };
    let in_flight: Vec<_> = (0..8)
        .map(|_| tokio::spawn(service.clone().oneshot(request())))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.revoke(&KeyDigest::of(GOOD)));
    let mut next = service.clone();
    let response = next.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(response.status(), 401, "the next request after revocation");
    gate.add_permits(8);
    for handle in in_flight {
        // Authenticated before the revocation: they complete.
        assert_eq!(handle.await.unwrap().unwrap().status(), 200);
    }
}

#[test]
fn debug_output_never_holds_a_key() {
    let store = store();
    let debug = format!(
        "{store:?} {:?} {:?}",
        KeyDigest::of(GOOD),
        Principal::new("key_good", "acct_1")
    );
    assert!(!debug.contains(GOOD));
    assert!(!debug.contains(&KeyDigest::of(GOOD).to_hex()));
    let layer = BearerAuthLayer::new(store).required_prefix("sk-llmaai-");
    assert!(!format!("{layer:?}").contains(GOOD));
}

#[tokio::test]
async fn the_trace_span_gets_the_key_id_and_never_the_key() {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(store()))
        .service_fn(|request: Request<Body>| async move {
            tracing::info!("handled");
            echo_principal(request).await
        });
    let span = tracing::info_span!("request", key_id = tracing::field::Empty);
    let request = Request::builder()
        .header("authorization", format!("Bearer {GOOD}"))
        .body(Body::empty())
        .unwrap();
    let _entered = span.enter();
    service.oneshot(request).await.unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("key_id=\"key_good\""), "{log}");
    assert!(!log.contains(GOOD));
}
