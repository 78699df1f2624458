//! `BearerAuthLayer` alone: a hashed key store in front of a service.
//! `cargo run --example auth`

use std::convert::Infallible;

use http::Request;
use tollgate::auth::{BearerAuthLayer, InMemoryKeyStore};
use tollgate::core::{Body, Principal};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() {
    let store = InMemoryKeyStore::new().with_key(
        "sk-llmaai-example-0000000001",
        Principal::new("key_1", "acct_1"),
    );
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(store).required_prefix("sk-llmaai-"))
        .service_fn(|request: Request<Body>| async move {
            let principal = request.extensions().get::<Principal>().cloned();
            Ok::<_, Infallible>(http::Response::new(Body::from(format!(
                "hello, {principal:?}"
            ))))
        });
    for header in [
        "Bearer sk-llmaai-example-0000000001",
        "Bearer  sk-llmaai-example-0000000001",
        "Basic abc",
    ] {
        let request = Request::builder()
            .header("authorization", header)
            .body(Body::empty())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        println!("{header:?} -> {}", response.status());
    }
}
