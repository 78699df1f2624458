//! tollgate: independent Tower layers for building an OpenAI-compatible LLM API gateway.
//!
//! Stack the layers you need inside your own hyper or axum service. Each layer lives in its
//! own crate and is re-exported here behind a feature of the same name; the default feature
//! `layers` enables every layer (the metrics layer included) and the upstream client, `full`
//! adds the admin API, the Prometheus exporter's `/metrics` service (`prometheus`), the Redis
//! backends and the testkit; `otlp` (OpenTelemetry export of metrics and spans) is opt-in:
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`core`] | `tollgate-core` | errors, the parsed request view, the caller identity, usage |
//! | `admin` | `tollgate-admin` | `AdminService`: issue, change and revoke keys, top up accounts, reload, while serving |
//! | `auth` | `tollgate-auth` | `BearerAuthLayer`: API keys stored hashed, 401s that say what to fix |
//! | `balance` | `tollgate-balance` | `BalanceGateLayer`, `Ledger`: prepaid balance that never overspends (402), settled from usage |
//! | `error` | `tollgate-error` | `ErrorEnvelopeLayer`: one JSON error envelope for every failure |
//! | `guard` | `tollgate-guard` | `RequestGuardLayer`: body size (413), read timeout (408), validation (400), context window |
//! | `metrics` | `tollgate-metrics` | `MetricsLayer`: durations, tokens, cost, outcomes and what is in flight, in OpenTelemetry's GenAI names, through the `metrics` facade; trace context carried to the provider |
//! | `models` | `tollgate-models` | `ModelResolutionLayer`, `ModelCatalog`, `ListModels`: slugs, aliases, deprecation, retirement |
//! | `ratelimit` | `tollgate-ratelimit` | `RateLimitLayer`: GCRA limits per key and model on governor, `X-RateLimit-*` headers (429) |
//! | `redis` | `tollgate-redis` | `RedisRateLimiter`, `RedisLedger`, `RedisKeyStore`: limits, balances and keys shared by every replica |
//! | `routes` | `tollgate-routes` | `KnownRoutesLayer`: default deny; only the metered endpoints, the listing and listed passthroughs get through (404/405) |
//! | `sse` | `tollgate-sse` | `SsePassthroughLayer`, `SseParser`: streams forwarded as they arrive, usage still seen |
//! | `upstream` | `tollgate-upstream` | `Upstream`: pooled HTTP(S) client, retries with backoff and jitter, fallback models, error envelopes |
//! | `testkit` | `tollgate-testkit` | an OpenAI-compatible mock upstream with fault injection |
//! | `trace` | (here) | the span (with the caller's `key_id`) and the one log line per request for tower-http's `TraceLayer` |
//!
//! # Recommended stack, outermost first
//!
//! `ErrorEnvelope` → request id (tower-http) → trace (tower-http, with `tollgate::trace`'s span and
//! log line) → catch panic (tower-http) → `BearerAuth` → `KnownRoutes` →
//! `ModelResolution` → `RequestGuard` → `RateLimit` → `SsePassthrough` → `BalanceGate` → upstream
//! (timeout, retry, fallback). The envelope goes outermost so that every rejection below it, and every error a
//! service returns, reaches the client as the same JSON with the request id. The catalog goes
//! before the guard so the guard checks the resolved model's context window; whichever of
//! them reads the body first applies its [`BodyLimit`](tollgate_core::BodyLimit) (size and
//! read timeout, the same defaults everywhere), and the guard still holds a body read by the
//! catalog to its own size limit.
//!
//! ```
//! use std::convert::Infallible;
//! use http::Request;
//! use tollgate::core::{Body, ErrorKind, GatewayError};
//! use tollgate::error::ErrorEnvelopeLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let gateway = ServiceBuilder::new()
//!     .layer(ErrorEnvelopeLayer::new())
//!     .service_fn(|_request: Request<Body>| async {
//!         Ok::<_, Infallible>(GatewayError::new(ErrorKind::ModelNotFound, "Unknown model.").into_response())
//!     });
//! let response = gateway.oneshot(Request::new(Body::empty())).await.unwrap();
//! assert_eq!(response.status(), 404);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

pub use tollgate_core as core;

#[cfg(feature = "admin")]
pub use tollgate_admin as admin;

#[cfg(feature = "auth")]
pub use tollgate_auth as auth;

#[cfg(feature = "balance")]
pub use tollgate_balance as balance;

#[cfg(feature = "error")]
pub use tollgate_error as error;

#[cfg(feature = "guard")]
pub use tollgate_guard as guard;

#[cfg(feature = "metrics")]
pub use tollgate_metrics as metrics;

#[cfg(feature = "models")]
pub use tollgate_models as models;

#[cfg(feature = "ratelimit")]
pub use tollgate_ratelimit as ratelimit;

#[cfg(feature = "redis")]
pub use tollgate_redis as redis;

#[cfg(feature = "routes")]
pub use tollgate_routes as routes;

#[cfg(feature = "sse")]
pub use tollgate_sse as sse;

#[cfg(feature = "testkit")]
pub use tollgate_testkit as testkit;

#[cfg(feature = "trace")]
pub mod trace;

#[cfg(feature = "upstream")]
pub use tollgate_upstream as upstream;

/// The types most gateways name.
pub mod prelude {
    pub use tollgate_core::{
        Body, ChatRequest, ErrorKind, GatewayError, ModelInfo, Principal, Rate, ResponseBody, Usage,
    };

    #[cfg(feature = "auth")]
    pub use tollgate_auth::{BearerAuthLayer, InMemoryKeyStore, KeyStore};
    #[cfg(feature = "balance")]
    pub use tollgate_balance::{BalanceGateLayer, InMemoryLedger, Ledger};
    #[cfg(feature = "error")]
    pub use tollgate_error::ErrorEnvelopeLayer;
    #[cfg(feature = "guard")]
    pub use tollgate_guard::RequestGuardLayer;
    #[cfg(feature = "models")]
    pub use tollgate_models::{ListModels, ModelCatalog, ModelResolutionLayer};
    #[cfg(feature = "ratelimit")]
    pub use tollgate_ratelimit::{Limits, RateLimitLayer};
    #[cfg(feature = "routes")]
    pub use tollgate_routes::KnownRoutesLayer;
    #[cfg(feature = "sse")]
    pub use tollgate_sse::{SseObserver, SseObservers, SsePassthroughLayer};
}
