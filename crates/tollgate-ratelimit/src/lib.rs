//! `RateLimitLayer`: GCRA rate limits per API key and model, on governor, with
//! `X-RateLimit-*` headers on every response.
//!
//! See [`RateLimitLayer`] for the rules and headers, [`RateLimitBackend`] for the backend
//! contract (check n units for a set of rule keys, all or nothing) and [`GovernorBackend`] for
//! the in-memory default.
//!
//! ```
//! use std::convert::Infallible;
//! use http::Request;
//! use tollgate_core::{Body, Principal, Rate};
//! use tollgate_ratelimit::{Limits, RateLimitLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let mut service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new().per_key(Limits::new().requests(Rate::per_minute(2).unwrap())))
//!     .service_fn(|_request: Request<Body>| async { Ok::<_, Infallible>(http::Response::new(Body::empty())) });
//! let request = || {
//!     let mut request = Request::new(Body::empty());
//!     request.extensions_mut().insert(Principal::new("key_demo", "acct_demo"));
//!     request
//! };
//! let first = service.ready().await.unwrap().call(request()).await.unwrap();
//! assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
//! service.ready().await.unwrap().call(request()).await.unwrap();
//! let third = service.ready().await.unwrap().call(request()).await.unwrap();
//! assert_eq!(third.status(), 429);
//! assert_eq!(third.headers()["retry-after"], "30");
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod backend;
mod future;
mod governor_backend;
mod headers;
mod layer;
mod service;

pub use backend::{Check, Decision, QuotaState, RateLimitBackend, RuleKey, Scope, States};
pub use governor_backend::GovernorBackend;
pub use layer::{Limits, RateLimitLayer};
pub use service::{RateLimit, ResponseFuture};
