//! `RequestGuardLayer` alone: validation and the context window.
//! `cargo run --example guard`

use std::convert::Infallible;

use http::Request;
use http_body_util::BodyExt;
use tollgate::core::{Body, PromptTokens};
use tollgate::guard::RequestGuardLayer;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() {
    let service = ServiceBuilder::new()
        .layer(RequestGuardLayer::new().fallback_window(4096, 512))
        .service_fn(|request: Request<Body>| async move {
            let tokens = request.extensions().get::<PromptTokens>().copied();
            Ok::<_, Infallible>(http::Response::new(Body::from(format!(
                "prompt tokens: {tokens:?}"
            ))))
        });
    for body in [
        r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"temperature":5}"#,
        r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_tokens":9000}"#,
    ] {
        let request = Request::post("/v1/chat/completions")
            .body(Body::from(body))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        println!("{status} {}", String::from_utf8_lossy(&text));
    }
}
