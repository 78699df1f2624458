//! What the layers of a stack learn about one request, for whoever measures it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::{ErrorKind, Principal, TraceContext, Usage};

/// One request's telemetry, shared by the layers that serve it: a metrics layer puts one in
/// the request extensions, and the layers below write what only they know (who called, which
/// model was asked for, the usage and its cost, upstream attempts, a stream that failed, the
/// headroom left). Clones share the same record; every write is a relaxed atomic or a
/// set-once field under an uncontended lock, so a layer pays nothing when no one measures (no
/// `Telemetry` in the extensions) and next to nothing when someone does.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{Telemetry, Usage};
///
/// let telemetry = Telemetry::new();
/// // What the layers below record...
/// telemetry.set_requested_model("gpt-5.4");
/// telemetry.add_attempt();
/// telemetry.add_upstream_time(Duration::from_millis(120));
/// telemetry.set_usage(Usage::new(30, 18), 2_400);
/// // ...the metrics layer reads once the response is done.
/// assert_eq!(telemetry.requested_model().as_deref(), Some("gpt-5.4"));
/// assert_eq!(telemetry.usage(), Some((Usage::new(30, 18), 2_400)));
/// assert_eq!(telemetry.attempts(), 1);
/// assert_eq!(telemetry.upstream_time(), Duration::from_millis(120));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    trace: Option<TraceContext>,
    // One lock for the set-once fields: cheaper than a `OnceLock` each, and the layers of one
    // request take it one after another.
    recorded: Mutex<Recorded>,
    attempts: AtomicU32,
    retries: AtomicU32,
    fallbacks: AtomicU32,
    upstream_nanos: AtomicU64,
    // Headroom: `UNSET` until recorded (a plain atomic store: the set-once cells cost more).
    rate_limit_remaining: AtomicU64,
    balance_unreserved: AtomicU64,
}

const UNSET: u64 = u64::MAX;

/// What the layers record once each (the first value stays), read together by
/// [`Telemetry::with_recorded`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Recorded {
    /// [`Telemetry::principal`].
    pub principal: Option<Principal>,
    /// [`Telemetry::requested_model`].
    pub requested_model: Option<Arc<str>>,
    /// [`Telemetry::usage`].
    pub usage: Option<(Usage, u64)>,
    /// [`Telemetry::stream_error`].
    pub stream_error: Option<ErrorKind>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            trace: None,
            recorded: Mutex::default(),
            attempts: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            fallbacks: AtomicU32::new(0),
            upstream_nanos: AtomicU64::new(0),
            rate_limit_remaining: AtomicU64::new(UNSET),
            balance_unreserved: AtomicU64::new(UNSET),
        }
    }
}

impl Telemetry {
    /// An empty record.
    pub fn new() -> Self {
        Telemetry::default()
    }

    /// An empty record of a request in this trace.
    pub fn with_trace(trace: TraceContext) -> Self {
        Telemetry {
            shared: Arc::new(Shared {
                trace: Some(trace),
                ..Shared::default()
            }),
        }
    }

    /// The request's trace, which the upstream client propagates (`traceparent`).
    pub fn trace(&self) -> Option<&TraceContext> {
        self.shared.trace.as_ref()
    }

    /// The authenticated caller (the auth layer records it).
    pub fn set_principal(&self, principal: &Principal) {
        self.lock()
            .principal
            .get_or_insert_with(|| principal.clone());
    }

    /// The caller, once authenticated.
    pub fn principal(&self) -> Option<Principal> {
        self.lock().principal.clone()
    }

    /// The catalog's canonical id of the model the request asked for (the model layer records
    /// it, also for a model it refuses, as long as the catalog knows it: an unknown name would
    /// make every label set a client can invent).
    pub fn set_requested_model(&self, model: impl Into<Arc<str>>) {
        self.lock()
            .requested_model
            .get_or_insert_with(|| model.into());
    }

    /// The model asked for, as the catalog names it.
    pub fn requested_model(&self) -> Option<Arc<str>> {
        self.lock().requested_model.clone()
    }

    /// The usage the upstream reported (or the billing estimate of it) and what it cost at the
    /// serving model's prices, in micro-units (the balance gate records it when it settles).
    pub fn set_usage(&self, usage: Usage, cost: u64) {
        self.lock().usage.get_or_insert((usage, cost));
    }

    /// Usage and cost, once known.
    pub fn usage(&self) -> Option<(Usage, u64)> {
        self.lock().usage
    }

    /// A stream that started well and then failed: the kind of its terminal error event (the
    /// response status, 200, cannot say so).
    pub fn set_stream_error(&self, kind: ErrorKind) {
        self.lock().stream_error.get_or_insert(kind);
    }

    /// How a failed stream failed.
    pub fn stream_error(&self) -> Option<ErrorKind> {
        self.lock().stream_error
    }

    /// Everything recorded once, read at once and in place (under the record's lock, so keep
    /// `read` short): what a metrics layer does when the request ends, without copying what it
    /// only looks at.
    ///
    /// ```
    /// use tollgate_core::{Principal, Telemetry};
    ///
    /// let telemetry = Telemetry::new();
    /// telemetry.set_principal(&Principal::new("key_1", "acct_1"));
    /// let (key, usage) = telemetry.with_recorded(|recorded| {
    ///     let key = recorded.principal.as_ref().map(|p| p.key_id().to_owned());
    ///     (key, recorded.usage)
    /// });
    /// assert_eq!(key.as_deref(), Some("key_1"));
    /// assert_eq!(usage, None);
    /// ```
    pub fn with_recorded<R>(&self, read: impl FnOnce(&Recorded) -> R) -> R {
        read(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A layer that panicked holding it left a whole value or none: still readable.
        self.shared
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One more request sent to the provider.
    pub fn add_attempt(&self) {
        self.shared.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent to the provider, retries and fallbacks included.
    pub fn attempts(&self) -> u32 {
        self.shared.attempts.load(Ordering::Relaxed)
    }

    /// One more retry of the same model.
    pub fn add_retry(&self) {
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries of the same model.
    pub fn retries(&self) -> u32 {
        self.shared.retries.load(Ordering::Relaxed)
    }

    /// One more fallback model tried.
    pub fn add_fallback(&self) {
        self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Fallback models tried.
    pub fn fallbacks(&self) -> u32 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }

    /// Time spent waiting on the provider (exchanges and the back-off between them) until the
    /// response head.
    pub fn add_upstream_time(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .upstream_nanos
            .fetch_add(nanos, Ordering::Relaxed);
    }

    /// All the time spent waiting on the provider.
    pub fn upstream_time(&self) -> Duration {
        Duration::from_nanos(self.shared.upstream_nanos.load(Ordering::Relaxed))
    }

    /// The requests the caller's tightest rate limit has left (the rate-limit layer records
    /// what its `X-RateLimit-Remaining` says).
    pub fn set_rate_limit_remaining(&self, remaining: u64) {
        self.shared
            .rate_limit_remaining
            .store(remaining.min(UNSET - 1), Ordering::Relaxed);
    }

    /// The tightest rate limit's remaining requests, when a rate limit applied.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        Some(self.shared.rate_limit_remaining.load(Ordering::Relaxed)).filter(|&n| n != UNSET)
    }

    /// The account's balance not held by reservations once this request's reservation is held,
    /// in micro-units (the balance gate records it).
    pub fn set_balance_unreserved(&self, unreserved: u64) {
        self.shared
            .balance_unreserved
            .store(unreserved.min(UNSET - 1), Ordering::Relaxed);
    }

    /// The account's unreserved balance, when the balance gate admitted the request.
    pub fn balance_unreserved(&self) -> Option<u64> {
        Some(self.shared.balance_unreserved.load(Ordering::Relaxed)).filter(|&n| n != UNSET)
    }
}
