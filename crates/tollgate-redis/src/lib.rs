//! Redis backends for tollgate, so that rate limits, prepaid balances, spend caps and API keys
//! hold across every gateway replica and survive restarts.
//!
//! One [`Redis`] connection per replica (a single node or a Redis Cluster) serves four
//! backends, each behind the trait its layer already takes:
//!
//! | backend | trait | layer |
//! |---|---|---|
//! | [`RedisRateLimiter`] | `RateLimitBackend` | `RateLimitLayer` |
//! | [`RedisLedger`] | `Ledger` | `BalanceGateLayer` |
//! | [`RedisKeyStore`] | `KeyStore` | `BearerAuthLayer` |
//! | [`RedisCapStore`] | `CapStore` | `BalanceGateLayer` (spend caps) |
//!
//! Every operation is one Lua script (atomic on the server, one round trip), on the Redis
//! server's clock (spend caps take their calendar window from the gateway's, see
//! [`RedisCapStore`]). Calls are pipelined on one multiplexed connection, so no pool is contended
//! on the hot path. Each call has a timeout ([`RedisConfig::timeout`], 50 ms by default) and
//! all go through one breaker: after a few failures in a row nothing waits on a dead Redis,
//! and one call probes it back. What a backend does while Redis fails is its own choice
//! ([`OnFailure`]): refuse with a retryable 503 (the default), or let requests through
//! unchecked, counted and logged.
//!
//! The keys each backend writes are listed on it, so operators can inspect them, and top up
//! accounts, with `redis-cli`.
//!
//! ```no_run
//! use tollgate_auth::BearerAuthLayer;
//! use tollgate_balance::BalanceGateLayer;
//! use tollgate_ratelimit::RateLimitLayer;
//! use tollgate_redis::{OnFailure, Redis, RedisConfig};
//!
//! # async fn run() -> Result<(), tollgate_core::BoxError> {
//! let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! let auth = BearerAuthLayer::new(redis.key_store().await?);
//! let limits = RateLimitLayer::with_backend(redis.rate_limiter().on_failure(OnFailure::Open));
//! let balance = BalanceGateLayer::new(redis.ledger()).spend_caps(redis.cap_store());
//! # let _ = (auth, limits, balance);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod caps;
mod client;
mod keys;
mod ledger;
mod ratelimit;

pub use caps::{CapReserveFuture, CapSettleFuture, CapUsageFuture, RedisCapStore};
pub use client::{DEFAULT_TIMEOUT, OnFailure, Redis, RedisConfig, WARN_INTERVAL};
pub use keys::{DEFAULT_CACHE_TTL, LookupFuture, RedisKeyStore};
pub use ledger::{BalanceFuture, RedisLedger, ReserveFuture, SettleFuture};
pub use ratelimit::{CheckFuture, RedisRateLimiter};
