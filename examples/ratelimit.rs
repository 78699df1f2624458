//! `RateLimitLayer` alone: 3 requests a minute per key, with headers.
//! `cargo run --example ratelimit`

use std::convert::Infallible;

use http::Request;
use tollgate::core::{Body, Principal, Rate};
use tollgate::ratelimit::{Limits, RateLimitLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() {
    let mut service = ServiceBuilder::new()
        .layer(RateLimitLayer::new().per_key(Limits::new().requests(Rate::per_minute(3).unwrap())))
        .service_fn(|_request: Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
    for _ in 0..4 {
        let mut request = Request::new(Body::empty());
        request
            .extensions_mut()
            .insert(Principal::new("key_1", "acct_1"));
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or_default().to_owned())
        };
        println!(
            "{} remaining={:?} reset={:?} retry-after={:?}",
            response.status(),
            header("x-ratelimit-remaining"),
            header("x-ratelimit-reset"),
            header("retry-after")
        );
    }
}
