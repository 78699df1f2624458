//! `ErrorEnvelopeLayer`: one JSON error envelope for every failure of a tollgate stack.
//!
//! The outermost layer of a gateway, outside tower-http's request-id layers: it reads the id
//! from the response's `x-request-id` (set by `PropagateRequestIdLayer`), else the request's.
//! It
//! - re-renders every response that carries a [`GatewayError`](tollgate_core::GatewayError)
//!   in its extensions, adding the `request_id` (from `x-request-id`, as tower-http's
//!   request-id layers set it);
//! - renders bare error responses with an empty body (a router's 404, tower-http's timeout)
//!   as envelopes too;
//! - turns inner `Service::Error`s into envelopes: a tower timeout into 504 `timeout`, a
//!   connection failure into 503 `provider_unavailable`, anything else into 500
//!   `internal_error` with a generic message (the detail goes only to the log).
//!
//! The stack's error type becomes `Infallible`, so it works under `axum::Router::layer` with no
//! `HandleErrorLayer`. [`RenderError`] swaps the JSON dialect.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use tollgate_core::Body;
//! use tollgate_error::ErrorEnvelopeLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let service = ServiceBuilder::new()
//!     .layer(ErrorEnvelopeLayer::new())
//!     .timeout(Duration::from_millis(10))
//!     .service_fn(|_request: Request<Body>| async {
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//!     });
//!
//! let request = Request::builder().header("x-request-id", "req_7").body(Body::empty()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(
//!     body,
//!     r#"{"error":{"message":"The request timed out. Request fewer tokens or try streaming.","type":"timeout","param":null,"code":null},"request_id":"req_7"}"#
//! );
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod future;
mod layer;
mod panic;
mod render;
mod service;

pub use future::ResponseFuture;
pub use layer::ErrorEnvelopeLayer;
pub use panic::panic_response;
pub use render::{Canonical, RenderError, StatusCodeDialect};
pub use service::ErrorEnvelope;
