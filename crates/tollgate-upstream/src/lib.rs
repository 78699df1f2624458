//! The upstream of a tollgate gateway: [`Upstream`] forwards to an OpenAI-compatible API with
//! retries (backoff and jitter, a budget), fallback models and error envelopes.
//!
//! - [`Upstream`] is the innermost tower service of a gateway: it sends the provider's key
//!   instead of the client's and only the client headers a provider needs, streams the
//!   response back as it arrives, and answers every failure with the gateway's error envelope
//!   (its error type is `Infallible`).
//! - [`UpstreamBuilder`] sets the provider key, the client headers forwarded beyond the
//!   default ones and the operator's fixed headers ([`HeaderNotAllowed`] refuses the client's
//!   credentials), the [`Timeouts`], the [`RetryPolicy`] with its [`RetryBudget`], and the
//!   body limit.
//! - Fallback models come from the request's [`Fallbacks`](tollgate_core::Fallbacks), which
//!   the model catalog's layer resolves.
//!
//! ```
//! use std::time::Duration;
//! use http::Request;
//! use tollgate_core::Body;
//! use tollgate_testkit::{Behavior, MockUpstream};
//! use tollgate_upstream::{RetryPolicy, Timeouts, Upstream};
//! use tower::ServiceExt;
//!
//! # tokio_test::block_on(async {
//! // A provider that fails its first call with a 503.
//! let provider = MockUpstream::builder()
//!     .model_behavior_times("gpt-5.4", Behavior::status(503), 1)
//!     .start()
//!     .await;
//! let upstream = Upstream::builder(&provider.url())?
//!     .api_key("sk-provider-key")?
//!     .retry(RetryPolicy::default().with_base_delay(Duration::from_millis(10)))
//!     .timeouts(Timeouts::default().with_total(Duration::from_secs(30)))
//!     .build();
//!
//! let request = Request::post("/v1/chat/completions")
//!     .header("authorization", "Bearer sk-client-key")
//!     .body(Body::from(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"Hi"}]}"#))?;
//! let response = upstream.oneshot(request).await?;
//! assert_eq!(response.status(), 200, "retried after the 503");
//! let calls = provider.calls();
//! assert_eq!(calls.len(), 2);
//! assert_eq!(calls[1].header("authorization"), Some("Bearer sk-provider-key"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod body;
mod builder;
mod errors;
mod exchange;
mod fallback;
mod headers;
mod retry;
mod service;
mod timeouts;

pub use body::UpstreamBody;
pub use builder::{InvalidApiKey, UpstreamBuilder};
pub use headers::HeaderNotAllowed;
pub use retry::{RetryBudget, RetryPolicy};
pub use service::Upstream;
pub use timeouts::Timeouts;
