//! `RateLimitLayer`: GCRA rate limits per API key and model, on governor, with
//! `X-RateLimit-*` headers on every response.
//!
//! [`RateLimitBackend`] is the backend contract (check n units for a set of rule keys, all or
//! nothing) and [`GovernorBackend`] the in-memory default.
//!
//! # What `RateLimitLayer` does
//!
//! Rate limits per API key, per key and model, and per model, in requests and tokens, with
//! `X-RateLimit-Limit` / `-Remaining` / `-Reset` on every response (success, rejection and
//! streams alike, set on the response head) for the most constraining rule.
//!
//! - The caller is the [`Principal`](tollgate_core::Principal) (whose own quotas override the
//!   per-key defaults); the model is the resolved [`ModelInfo`](tollgate_core::ModelInfo), else
//!   the request's `model`. Rules whose subject is unknown do not apply.
//! - A request costs 1 against request rules and prompt + requested completion tokens against
//!   token rules: the guard's [`PromptTokens`](tollgate_core::PromptTokens) (else the prompt's
//!   bytes, an upper bound) plus `max_completion_tokens` / `max_tokens` (else the model's max
//!   output).
//! - 429 `rate_limit_exceeded` with `Retry-After` (whole seconds, rounded up, never 0), an
//!   OpenAI-style message that says the limit is the gateway's, and details
//!   `{scope, limit, remaining, reset}`; a request that can never fit is told so, with
//!   `x-should-retry: false`.
//! - Only a request that was admitted counts: when a layer further in refuses it (the balance
//!   gate's 402, a later check's 400/403/413: a response carrying
//!   [`Refused`](tollgate_core::admission::Refused)), the charge is given back
//!   ([`RateLimitBackend::refund`]). A request the provider answered counts, whatever it
//!   answered. The headers show the state when the request was charged.
//! - Quotas beyond 32 bits (a token limit of 1e11) are counted and reported in 64 bits.
//! - OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and the IETF draft's
//!   `RateLimit-Policy` / `RateLimit` are options.
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

pub use backend::{
    Check, Decision, INLINE_RULES, QuotaState, RateLimitBackend, RuleKey, Scope, States,
};
pub use governor_backend::GovernorBackend;
pub use layer::{Limits, RateLimitLayer};
pub use service::{RateLimit, ResponseFuture};
