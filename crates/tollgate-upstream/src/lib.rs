//! The upstream of a tollgate gateway: [`Upstream`] forwards to an OpenAI-compatible API with
//! retries (backoff and jitter, a budget), fallback models and error envelopes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod builder;
mod errors;
mod exchange;
mod fallback;
mod headers;
mod retry;
mod service;
mod timeouts;

pub use builder::{InvalidApiKey, UpstreamBuilder};
pub use retry::{RetryBudget, RetryPolicy};
pub use service::Upstream;
pub use timeouts::Timeouts;
