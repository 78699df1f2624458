//! The upstream of a tollgate gateway: [`Upstream`] forwards to an OpenAI-compatible API with
//! retries (backoff and jitter, a budget), fallback models and error envelopes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod errors;
mod service;

pub use config::{RetryPolicy, Timeouts};
pub use service::{Upstream, UpstreamBuilder};
