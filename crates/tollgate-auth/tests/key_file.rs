//! Stores built from a `KeyFile`: the keys authenticate with their principal, and every
//! problem in the file is reported at once.

use std::convert::Infallible;

use http::{Request, Response};
use tollgate_auth::{BearerAuthLayer, InMemoryKeyStore, KeyDigest, KeyFile};
use tollgate_core::{Body, Principal, Rate};
use tower::{ServiceBuilder, ServiceExt};

fn file(json: &str) -> KeyFile {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn a_key_from_the_file_authenticates_with_its_principal() {
    let file = file(
        r#"{"required_prefix": "sk-llmaai-", "keys": [
            {"key": "sk-llmaai-mini-0001", "id": "key_mini", "account": "acct_1",
             "models": ["gpt-5.4-mini"], "requests_per_minute": 5, "tokens_per_minute": 1000},
            {"sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
             "id": "key_foo", "account": "acct_2"}
        ]}"#,
    );
    let store = InMemoryKeyStore::from_file(&file).unwrap();
    assert_eq!(store.len(), 2);
    assert!(
        store.remove(&KeyDigest::of("foo")),
        "the digest is stored as given"
    );

    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(store).required_prefix(file.required_prefix.unwrap()))
        .service_fn(|request: Request<Body>| async move {
            let principal = request.extensions().get::<Principal>().unwrap().clone();
            let response = Response::builder().extension(principal).body(Body::empty());
            Ok::<_, Infallible>(response.unwrap())
        });
    let request = Request::builder()
        .header("authorization", "Bearer sk-llmaai-mini-0001")
        .body(Body::empty())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let principal = response.extensions().get::<Principal>().unwrap();
    assert_eq!(principal.key_id(), "key_mini");
    assert_eq!(principal.account_id(), "acct_1");
    assert!(principal.allows_model("gpt-5.4-mini") && !principal.allows_model("gpt-5.4"));
    assert_eq!(
        principal.request_quota(),
        Some(Rate::per_minute(5).unwrap())
    );
    assert_eq!(
        principal.token_quota(),
        Some(Rate::per_minute(1000).unwrap())
    );
}

#[tokio::test]
async fn every_problem_is_reported_naming_its_key() {
    let file = file(
        r#"{"required_prefix": "sk-llmaai-", "keys": [
            {"key": "sk-other-0001", "id": "key_prefix", "account": "a"},
            {"key": "sk-llmaai-0002", "sha256": "00", "id": "key_both", "account": "a"},
            {"id": "key_neither", "account": "a"},
            {"sha256": "xyz", "id": "key_hex", "account": "a"},
            {"key": "sk-llmaai-0003", "id": "key_zero", "account": "a", "tokens_per_minute": 0},
            {"key": "sk-llmaai-0004", "id": "key_zero", "account": "a"},
            {"key": "sk-llmaai-0004", "id": "key_again", "account": "a"}
        ]}"#,
    );
    let error = InMemoryKeyStore::from_file(&file).unwrap_err();
    assert_eq!(
        error.problems,
        [
            "key key_prefix: key does not start with \"sk-llmaai-\"",
            "key key_both: set exactly one of `key` and `sha256`",
            "key key_neither: set exactly one of `key` and `sha256`",
            "key key_hex: sha256 is not 64 hex digits",
            "key key_zero: tokens_per_minute: a rate needs a positive amount, burst and period",
            "key key_zero: listed twice",
            "key key_again: the same key as another entry",
        ]
    );
    assert!(
        error
            .to_string()
            .starts_with("invalid key file: key key_prefix")
    );
}

#[test]
fn unknown_fields_are_refused() {
    let error =
        serde_json::from_str::<KeyFile>(r#"{"keys": [{"id": "k", "account": "a", "rpm": 5}]}"#)
            .unwrap_err();
    assert!(error.to_string().contains("unknown field `rpm`"), "{error}");
}

#[test]
fn a_plaintext_key_is_redacted_in_debug_output() {
    let file =
        file(r#"{"keys": [{"key": "sk-llmaai-secret-00000001", "id": "k", "account": "a"}]}"#);
    let debug = format!("{file:?}");
    assert!(!debug.contains("secret-00000001"), "{debug}");
}
