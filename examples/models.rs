//! `ModelResolutionLayer` alone: aliases, did-you-mean, retirement.
//! `cargo run --example models`

use std::convert::Infallible;

use http::Request;
use http_body_util::BodyExt;
use tollgate::core::{Body, ModelInfo};
use tollgate::models::{ModelCatalog, ModelResolutionLayer};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() {
    let catalog = ModelCatalog::from_toml(
        r#"
        [[models]]
        id = "gpt-5.4"
        aliases = ["latest"]
        context_window = 400000
        max_output_tokens = 128000

        [[models]]
        id = "gpt-4o"
        context_window = 128000
        max_output_tokens = 16384
        status = "retired"
        retired_on = "2026-06-30"
        replacement = "gpt-5.4"
        "#,
    )
    .unwrap();
    let service = ServiceBuilder::new()
        .layer(ModelResolutionLayer::new(catalog))
        .service_fn(|request: Request<Body>| async move {
            let model = request
                .extensions()
                .get::<ModelInfo>()
                .map(|m| m.id.to_string());
            Ok::<_, Infallible>(http::Response::new(Body::from(format!(
                "served by {model:?}"
            ))))
        });
    for model in ["latest", "GPT-5.4", "gpt-4o"] {
        let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
        let request = Request::post("/v1/chat/completions")
            .body(Body::from(body))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        println!("{model} -> {status} {}", String::from_utf8_lossy(&text));
    }
}
