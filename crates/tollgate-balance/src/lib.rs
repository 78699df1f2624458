//! `BalanceGateLayer`: a prepaid-balance gate that can never overspend.
//!
//! - [`Ledger`]: `reserve` / `settle` / `release` / `balance` / `top_up` in integer
//!   micro-units; [`InMemoryLedger`] is atomic per account, so concurrent requests can never
//!   reserve more than the balance, and a top-up is available to the very next request.
//! - [`BalanceGateLayer`]: 402 `insufficient_balance` before the request runs, settlement to
//!   the real cost from `usage` (JSON or the final SSE chunk, observed as the body streams)
//!   after, release on upstream errors, a documented [`NoUsagePolicy`] when no usage arrives.
//! - [`UsageSink`]: one [`UsageRecord`] per finished request; [`TracingUsageSink`] writes JSON
//!   lines to a tracing target.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use http::Request;
//! use tollgate_balance::{BalanceGateLayer, InMemoryLedger, Ledger};
//! use tollgate_core::{Body, ModelInfo, Prices, Principal};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let ledger = Arc::new(InMemoryLedger::new());
//! let service = ServiceBuilder::new()
//!     .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()))
//!     .service_fn(|_request: Request<Body>| async { Ok::<_, Infallible>(http::Response::new(Body::from("{}"))) });
//! let request = || {
//!     let mut request = Request::new(Body::empty());
//!     request.extensions_mut().insert(Principal::new("key_1", "acct_1"));
//!     request.extensions_mut().insert(ModelInfo::new("m", 8_192, 1_000).prices(Prices::new(1_000_000, 2_000_000)));
//!     request
//! };
//! let response = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(response.status(), 402);
//! ledger.top_up("acct_1", 10_000).await.unwrap();
//! let response = service.oneshot(request()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod accounting;
mod body;
mod future;
mod layer;
mod ledger;
mod service;

pub use accounting::{NoUsagePolicy, TracingUsageSink, UsageRecord, UsageSink, UsageSource};
pub use body::BalanceBody;
pub use future::X_BALANCE;
pub use layer::BalanceGateLayer;
pub use ledger::{InMemoryLedger, Ledger, LedgerError, Micros, Reservation, Settlement};
pub use service::{BalanceGate, ResponseFuture};
