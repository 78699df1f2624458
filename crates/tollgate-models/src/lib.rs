//! `ModelResolutionLayer`: model slugs, aliases, deprecation and retirement for LLM gateways.
//!
//! - [`ModelCatalog`]: models with canonical lowercase ids, aliases, context window, max
//!   output, endpoints, prices (integer micro-units per million tokens) and a lifecycle
//!   (active, deprecated with a sunset, retired with a replacement); loaded from TOML or JSON
//!   and validated when built.
//! - [`ModelResolutionLayer`]: resolves each request's model against the catalog (below).
//! - [`ListModels`]: `GET /v1/models` from the catalog.
//!
//! # What `ModelResolutionLayer` does
//!
//! Validates the `model` of every request against a [`ModelCatalog`].
//!
//! For `POST` requests to an endpoint that names a model (OpenAI's, and any endpoint the
//! catalog lists) it reads the body once as JSON, whatever `content-type` says (shared with other body-aware layers
//! through [`tollgate_core::buffer_chat_request`]) and answers:
//! - 400 `invalid_request_error` (param `model`) when `model` is missing or not a string;
//! - 404 `model_not_found` with a did-you-mean when a name is close;
//! - 410 `model_retired` with the replacement and the date;
//! - 403 `forbidden` when the caller's [`Principal`](tollgate_core::Principal) may not use it;
//! - 400 `unsupported_operation` when the model does not serve the endpoint;
//! - otherwise it serves the request: an alias is rewritten to the canonical id by splicing the
//!   body (every other byte unchanged), the [`ModelInfo`](tollgate_core::ModelInfo) goes into
//!   the request extensions, and the response gets `x-tollgate-model` (unless an inner layer,
//!   such as a fallback, already set it) and, for a deprecated model, `Deprecation`, `Sunset`
//!   and `Link`.
//! - A `fallbacks` array in the body (a gateway extension) is checked like `model`, each
//!   error naming `fallbacks[i]`; without one, the catalog entry's `fallbacks` apply (those
//!   the caller may use on this endpoint). The resolved models go into the request extensions
//!   as [`Fallbacks`](tollgate_core::Fallbacks) for the upstream.
//!
//! Other requests (other methods or paths) pass through untouched. The body is read as JSON
//! whatever `content-type` declares, so no declared type skips the checks.
//!
//! ```
//! use std::convert::Infallible;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tollgate_core::{Body, ModelInfo};
//! use tollgate_models::{ModelCatalog, ModelResolutionLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let catalog = ModelCatalog::from_toml(r#"
//!     [[models]]
//!     id = "openai/gpt-5.4"
//!     aliases = ["gpt-5.4"]
//!     context_window = 400000
//!     max_output_tokens = 128000
//!
//!     [[models]]
//!     id = "mimo/mimo-v2-pro"
//!     context_window = 128000
//!     max_output_tokens = 8192
//!     status = "retired"
//!     retired_on = "2026-06-30"
//!     replacement = "openai/gpt-5.4"
//! "#).unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(ModelResolutionLayer::new(catalog))
//!     .service_fn(|request: Request<Body>| async move {
//!         let model = request.extensions().get::<ModelInfo>().unwrap().id.clone();
//!         let body = request.into_body().collect().await.unwrap().to_bytes();
//!         Ok::<_, Infallible>(http::Response::new(Body::from(format!("{model} {}", String::from_utf8_lossy(&body)))))
//!     });
//!
//! let chat = |model: &str| {
//!     Request::post("/v1/chat/completions")
//!         .body(Body::from(format!(r#"{{"model":"{model}","messages":[]}}"#)))
//!         .unwrap()
//! };
//! // An alias: served as the canonical model, with the body rewritten.
//! let response = service.clone().oneshot(chat("gpt-5.4")).await.unwrap();
//! assert_eq!(response.headers()["x-tollgate-model"], "openai/gpt-5.4");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, r#"openai/gpt-5.4 {"model":"openai/gpt-5.4","messages":[]}"#);
//!
//! // A retired model: 410 with the replacement.
//! let response = service.oneshot(chat("mimo/mimo-v2-pro")).await.unwrap();
//! assert_eq!(response.status(), 410);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod catalog;
mod decide;
mod layer;
mod list;
mod live;
mod service;
mod suggest;

pub use catalog::{
    CHAT_COMPLETIONS, CatalogError, CatalogFile, Model, ModelCatalog, ModelEntry, PriceEntry,
    Resolution, Status,
};
pub use layer::ModelResolutionLayer;
pub use list::ListModels;
pub use live::LiveCatalog;
pub use service::{ModelResolution, ResponseFuture};
