//! `KnownRoutesLayer`: default deny. Only what the stack understands gets through.
//!
//! A gateway forwards requests to a provider under the provider's key. A path the metering
//! layers do not know (`/v1/batches`, `/v1/files/..`), a known path with another method
//! (`PUT /v1/chat/completions`) or another spelling (`/v1/chat/completions/`,
//! `/v1//chat/completions`) would reach the provider unchecked and unbilled. Put this layer
//! right after authentication, before the catalog:
//!
//! - `POST` to a metered [`Endpoint`](tollgate_core::Endpoint) (chat completions, responses, legacy completions,
//!   embeddings; all four by default, or those [`endpoints`](KnownRoutesLayer::endpoints)
//!   names) passes, with the [`Endpoint`](tollgate_core::Endpoint) in the request extensions for the layers below;
//! - `GET` or `HEAD` of `/v1/models` and `/v1/models/{id}` (the catalog's listing) passes;
//! - a path the operator listed with [`passthrough`](KnownRoutesLayer::passthrough) passes for
//!   the listed method: still authenticated and rate limited per request by the layers around
//!   it, but with no model to check or bill;
//! - any other method on one of these paths is a 405 `method_not_allowed` with `Allow`;
//! - anything else is a 404 `unknown_route` naming the method and path (never
//!   `model_not_found`).
//!
//! Paths match exactly, byte for byte: a trailing slash, a doubled slash, a dot segment or a
//! percent-encoded slash is another path, so it is refused rather than normalized into one the
//! provider might read differently.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Method, Request, Response};
//! use tollgate_core::{Body, Endpoint};
//! use tollgate_routes::KnownRoutesLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let service = ServiceBuilder::new()
//!     .layer(KnownRoutesLayer::new())
//!     .service_fn(|request: Request<Body>| async move {
//!         let endpoint = request.extensions().get::<Endpoint>().copied();
//!         Ok::<_, Infallible>(Response::new(Body::from(format!("{endpoint:?}"))))
//!     });
//! let call = |method: Method, path: &str| {
//!     let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
//!     service.clone().oneshot(request)
//! };
//! assert_eq!(call(Method::POST, "/v1/responses").await.unwrap().status(), 200);
//! assert_eq!(call(Method::POST, "/v1/batches").await.unwrap().status(), 404);
//! let wrong_method = call(Method::PUT, "/v1/chat/completions").await.unwrap();
//! assert_eq!(wrong_method.status(), 405);
//! assert_eq!(wrong_method.headers()["allow"], "POST");
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod layer;
mod service;

pub use layer::KnownRoutesLayer;
pub use service::{KnownRoutes, ResponseFuture};
