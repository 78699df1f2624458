//! tollgate's layers on an axum `Router`: auth, the model catalog and the guard in front of a
//! handler that answers itself (an echo model), the error envelope outermost. No
//! `HandleErrorLayer` is needed: every layer rejects with a response.
//!
//! `cargo run --example axum`, then:
//! `curl -s localhost:3000/v1/chat/completions -H 'Authorization: Bearer sk-llmaai-axum-0123456789abcdef' -d '{"model":"echo","messages":[{"role":"user","content":"hi"}]}'`

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use http::Request;
use tollgate::auth::{BearerAuthLayer, InMemoryKeyStore};
use tollgate::core::{ChatRequest, Principal};
use tollgate::error::ErrorEnvelopeLayer;
use tollgate::guard::RequestGuardLayer;
use tollgate::models::{ListModels, ModelCatalog, ModelResolutionLayer};
use tower::ServiceBuilder;

/// The demo key of this example.
pub const KEY: &str = "sk-llmaai-axum-0123456789abcdef";

/// The application: `POST /v1/chat/completions` (echo) and `GET /v1/models`, behind the layers.
pub fn app() -> Router {
    let catalog = ModelCatalog::from_toml(
        r#"
        [[models]]
        id = "echo"
        aliases = ["parrot"]
        context_window = 8192
        max_output_tokens = 1024
        "#,
    )
    .expect("a valid catalog");
    let keys = InMemoryKeyStore::new().with_key(KEY, Principal::new("key_axum", "acct_axum"));
    let models = ListModels::new(catalog.clone());
    Router::new()
        .route("/v1/chat/completions", post(echo))
        .route_service(
            "/v1/models",
            get(move |request: Request<Body>| async move {
                use tower::ServiceExt;
                models.oneshot(request).await
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ErrorEnvelopeLayer::new())
                .layer(BearerAuthLayer::new(keys))
                .layer(ModelResolutionLayer::new(catalog))
                .layer(RequestGuardLayer::new()),
        )
}

/// Answers with the last message, read from the request view the layers already parsed.
async fn echo(
    Extension(chat): Extension<ChatRequest>,
    Extension(principal): Extension<Principal>,
) -> String {
    let tollgate::core::Field::Value(messages) = chat.messages_field() else {
        return String::new();
    };
    let last = messages
        .iter()
        .rev()
        .flatten()
        .find_map(|message| match message.content {
            tollgate::core::chat::Content::Text(text) => Some(chat.text(text).into_owned()),
            _ => None,
        });
    format!("{}: {}", principal.key_id(), last.unwrap_or_default())
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .expect("port 3000 is free");
    // axum's `serve` leaves Nagle's algorithm on; responses written in pieces then wait for
    // the client's delayed ACK (~40 ms each).
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    println!("axum + tollgate on http://127.0.0.1:3000 (key {KEY})");
    axum::serve(listener, app()).await.expect("the server runs");
}
