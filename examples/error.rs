//! `ErrorEnvelopeLayer` alone: a timeout and a panic become JSON envelopes with the request id.
//! `cargo run --example error`

use std::convert::Infallible;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use tollgate::core::Body;
use tollgate::error::{ErrorEnvelopeLayer, panic_response};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;

#[tokio::main]
async fn main() {
    // The panic below is on purpose: keep the default hook from printing it.
    std::panic::set_hook(Box::new(|_| {}));
    let service = ServiceBuilder::new()
        .layer(ErrorEnvelopeLayer::new())
        .layer(CatchPanicLayer::custom(panic_response))
        .timeout(Duration::from_millis(50))
        .service_fn(|request: Request<Body>| async move {
            match request.uri().path() {
                "/panic" => panic!("a bug"),
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
    for path in ["/slow", "/panic"] {
        let request = Request::get(path)
            .header("x-request-id", "req_example")
            .body(Body::empty())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        println!("{path} -> {status} {}", String::from_utf8_lossy(&body));
    }
}
