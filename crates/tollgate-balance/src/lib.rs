//! `BalanceGateLayer`: a prepaid-balance gate, with spend caps per API key, that can never
//! overspend.
//!
//! - [`Ledger`]: `reserve` / `settle` / `release` / `balance` / `top_up` in integer
//!   micro-units; [`InMemoryLedger`] is atomic per account, so concurrent requests can never
//!   reserve more than the balance, and a top-up is available to the very next request.
//! - [`CapStore`]: spend caps per API key (per UTC day, ISO week, month, or rolling period),
//!   reserve / settle / release like the ledger; [`InMemoryCapStore`] keeps all caps of a key
//!   under one lock, so a request holds on all of them or none.
//! - [`BalanceGateLayer`]: reserve before, settle after (below).
//! - [`UsageSink`]: one [`UsageRecord`] per finished request; [`TracingUsageSink`] writes JSON
//!   lines to a tracing target.
//! - [`JsonLinesFile`]: usage records as JSON lines in files that survive a restart, rotated by
//!   size and age, fsynced by an [`Fsync`] policy; run behind a [`NonBlockingUsageSink`], a
//!   bounded queue and a thread of its own, so a slow disk never slows a request (a full queue
//!   drops records and counts them).
//!
//! # What `BalanceGateLayer` does
//!
//! Gates requests on a prepaid balance and charges them their real cost.
//!
//! - The account is the [`Principal`](tollgate_core::Principal)'s; the price is the resolved
//!   [`ModelInfo`](tollgate_core::ModelInfo)'s (a response that names another model in its
//!   extensions, after a fallback, settles at that model's price). Requests without both pass
//!   through unbilled.
//! - Before the request: reserve the estimate ([`TokenEstimate`](tollgate_core::TokenEstimate)),
//!   prompt tokens × input price (none assumed cached) + requested completion tokens (`max_completion_tokens` /
//!   `max_tokens`, else the model's max output, times `n` choices) × output price. No credit →
//!   402 `insufficient_balance` "Your prepaid credit has run out...";
//!   not enough → 402 saying what the request may cost and what is left; details
//!   `{balance, required}`.
//! - After: settle to the real cost from `usage`
//!   ([`Prices::usage_cost`](tollgate_core::Prices::usage_cost): prompt tokens the provider
//!   read from its cache at the model's cached-input price, the others at the input price,
//!   completion tokens, reasoning included, at the output price), at the end of a JSON body
//!   (only its tail is kept) or from the final SSE chunk (observed through the
//!   [`SsePassthroughLayer`](tollgate_sse::SsePassthroughLayer)'s single parse when it is in
//!   the stack, else by wrapping the stream itself). An error response, or an upstream that
//!   fails mid-stream, releases the reservation. No usage (client gone mid-stream) → the
//!   [`NoUsagePolicy`], `ChargeObserved` by default.
//! - Spend caps: a [`Principal`](tollgate_core::Principal) with
//!   [spend caps](tollgate_core::Principal::with_spend_caps) also reserves the estimate on each
//!   of them ([`CapStore`], in the window of the [cap clock](BalanceGateLayer::cap_clock)),
//!   at the same time as on the balance; if either refuses, what the other reserved goes back.
//!   A cap without room → 402 `insufficient_balance` with code `budget_exceeded` and details
//!   `{period, cap, spent, reserved, required, resets_at}` (`resets_at` in RFC 3339, UTC), or
//!   429 `rate_limit_exceeded` with `Retry-After` until the reset
//!   ([`CapExceededStatus::TooManyRequests`]). A request dearer than the cap itself is told so,
//!   not to retry. When both refuse, the balance's 402 wins (a reset does not add credit).
//!   Settling charges the caps first and the balance no more than they counted.
//! - Spend never exceeds what the account holds: an upstream that reports more than was
//!   reserved (it ignored `max_tokens`) is charged at most the reservation plus the balance
//!   left, the balance stops at zero, and the record says `capped`.
//! - Optionally, `x-tollgate-balance-unreserved` on the response: the balance not held by
//!   reservations once this request's worst case is held, in micro-units (the head goes out
//!   before the charge is known, so it is not the balance after the charge).
//! - A [`UsageSink`] gets one [`UsageRecord`] per finished request, once its settlement is
//!   done: its `cost` is what the ledger took.
//!
//! Put it inside `SsePassthroughLayer` (so streams are parsed once and usage injection feeds
//! it) and just before the upstream.
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
mod caps;
mod future;
mod layer;
mod ledger;
mod service;
mod sink;

pub use accounting::{NoUsagePolicy, TracingUsageSink, UsageRecord, UsageSink, UsageSource};
pub use body::BalanceBody;
pub use caps::{
    CapError, CapExceeded, CapReservation, CapSettlement, CapStore, CapUsage, InMemoryCapStore,
    RollingSlots,
};
pub use future::X_BALANCE_UNRESERVED;
pub use layer::{BalanceGateLayer, CapExceededStatus};
pub use ledger::{
    DEFAULT_RESERVATION_TTL, InMemoryLedger, InvalidReservationId, Ledger, LedgerError, Micros,
    Reservation, ReservationId, Settlement,
};
pub use service::{BalanceGate, ResponseFuture};
pub use sink::{
    Fsync, JsonLinesFile, JsonLinesFileBuilder, NonBlockingUsageSink, NonBlockingUsageSinkBuilder,
};
