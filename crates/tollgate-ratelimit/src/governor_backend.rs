//! The in-memory backend: governor's GCRA over a keyed store that stays bounded by itself.

use std::fmt;
use std::future::{Ready, ready};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use foldhash::fast::RandomState;
use governor::clock::{Clock, QuantaClock, Reference};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use tollgate_core::{BoxError, Rate};

use smallvec::SmallVec;

use crate::backend::{
    Check, Decision, INLINE_RULES, QuotaState, RateLimitBackend, RuleKey, States,
};

/// Sweeps never run below this many keys.
const MIN_SWEEP_AT: usize = 4096;

/// Rate limits in memory on governor's GCRA. Cheap to clone (shared state).
///
/// One governor keyed limiter per distinct quota, over a lock-free store (papaya, hashed with
/// foldhash) whose keys are [`RuleKey`]s. All-or-nothing: when a later rule denies, the rules already charged are
/// refunded (a GCRA charge only moves a key's theoretical arrival time forward, so taking it
/// back is a subtraction). The store stays bounded with no cleanup loop to run: when it has
/// doubled since its last sweep, the next insert drops every key that is full again (and so
/// indistinguishable from a new one), so sweeping costs O(1) amortized per new key.
///
/// ```
/// use tollgate_core::Rate;
/// use tollgate_ratelimit::{Check, Decision, GovernorBackend, RateLimitBackend, RuleKey, Scope};
///
/// # tokio_test::block_on(async {
/// let backend = GovernorBackend::new();
/// let check = || vec![Check { key: RuleKey::new(Scope::KeyRequests, Some("key_1".into()), None), rate: Rate::per_minute(1).unwrap(), cost: 1 }];
/// assert!(matches!(backend.check(&check()).await.unwrap(), Decision::Allowed(_)));
/// assert!(matches!(backend.check(&check()).await.unwrap(), Decision::Denied { .. }));
/// # });
/// ```
pub struct GovernorBackend<C: Clock = QuantaClock> {
    clock: C,
    limiters: Arc<papaya::HashMap<Rate, Arc<Limiter<C>>, RandomState>>,
}

impl<C: Clock + Clone> Clone for GovernorBackend<C> {
    fn clone(&self) -> Self {
        GovernorBackend {
            clock: self.clock.clone(),
            limiters: self.limiters.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for GovernorBackend<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernorBackend")
            .field("quotas", &self.limiters.len())
            .finish_non_exhaustive()
    }
}

impl GovernorBackend {
    /// A backend on the monotonic quanta clock.
    pub fn new() -> Self {
        GovernorBackend::with_clock(QuantaClock::default())
    }
}

impl Default for GovernorBackend {
    fn default() -> Self {
        GovernorBackend::new()
    }
}

struct Limiter<C: Clock> {
    limiter: RateLimiter<RuleKey, Store<C>, C, StateInformationMiddleware>,
    store: Store<C>,
    /// Nanoseconds per cell.
    t: u64,
    /// Extra cells of burst, as time.
    tau: u64,
    /// The burst, in cells.
    burst: u64,
    /// Units per cell: 1, unless the quota is larger than governor's 32-bit cells hold, when
    /// each cell stands for several units (costs round up to whole cells).
    scale: u64,
}

impl<C: Clock> Limiter<C> {
    /// `cost` units in cells, rounded up.
    fn cells(&self, cost: u64) -> u64 {
        cost.div_ceil(self.scale)
    }

    /// Moves the key's arrival time back by what `check` charged.
    fn give_back(&self, check: &Check) {
        self.store
            .refund(&check.key, self.cells(check.cost) * self.t);
    }
}

/// Keys' GCRA state: each key's theoretical arrival time, in nanoseconds since its limiter
/// started.
struct Store<C: Clock> {
    tats: Arc<papaya::HashMap<RuleKey, AtomicU64, RandomState>>,
    sweep_at: Arc<AtomicUsize>,
    clock: C,
    /// Read just after the limiter took its own start, so that "now" measured from it is never
    /// ahead of the limiter's: a sweep only ever drops keys that are truly full again.
    started: Arc<OnceLock<C::Instant>>,
}

impl<C: Clock + Clone> Clone for Store<C> {
    fn clone(&self) -> Self {
        Store {
            tats: self.tats.clone(),
            sweep_at: self.sweep_at.clone(),
            clock: self.clock.clone(),
            started: self.started.clone(),
        }
    }
}

impl<C: Clock> StateStore for Store<C> {
    type Key = RuleKey;

    fn measure_and_replace<T, F, E>(&self, key: &RuleKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let tats = self.tats.pin();
        loop {
            match tats.get(key) {
                Some(tat) => {
                    let current = tat.load(Ordering::Acquire);
                    let (outcome, next) = f(Some(Nanos::new(current)))?;
                    let swapped = tat
                        .compare_exchange(
                            current,
                            next.as_u64(),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok();
                    // A sweep may have dropped this key between the read and the swap: a charge
                    // on the dropped entry would be lost, so it only counts if the entry is
                    // still the key's.
                    let still_current = tats.get(key).is_some_and(|now| std::ptr::eq(now, tat));
                    if swapped && still_current {
                        return Ok(outcome);
                    }
                }
                None => {
                    let (outcome, next) = f(None)?;
                    if tats
                        .try_insert(key.clone(), AtomicU64::new(next.as_u64()))
                        .is_ok()
                    {
                        drop(tats);
                        self.sweep_if_grown();
                        return Ok(outcome);
                    }
                }
            }
        }
    }
}

impl<C: Clock> Store<C> {
    fn refund(&self, key: &RuleKey, nanos: u64) {
        if let Some(tat) = self.tats.pin().get(key) {
            let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(nanos))
            });
        }
    }

    fn sweep_if_grown(&self) {
        let len = self.tats.len();
        let sweep_at = self.sweep_at.load(Ordering::Relaxed);
        if len < sweep_at
            || self
                .sweep_at
                .compare_exchange(sweep_at, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let Some(started) = self.started.get() else {
            return;
        };
        let now = self.clock.now().duration_since(*started).as_u64();
        self.tats
            .pin()
            .retain(|_, tat| tat.load(Ordering::Acquire) > now);
        self.sweep_at
            .store((self.tats.len() * 2).max(MIN_SWEEP_AT), Ordering::Release);
    }
}

impl<C> GovernorBackend<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// A backend on another clock, such as governor's `FakeRelativeClock` for tests.
    pub fn with_clock(clock: C) -> Self {
        GovernorBackend {
            clock,
            limiters: Arc::new(papaya::HashMap::with_hasher(RandomState::default())),
        }
    }

    /// Keys held across every quota (full ones are dropped at the next sweep).
    pub fn len(&self) -> usize {
        self.limiters
            .pin()
            .values()
            .map(|limiter| limiter.store.tats.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The limiter of a quota, made on first use; borrowed for as long as `guard` lives.
    fn limiter<'g>(&self, rate: Rate, guard: &'g impl papaya::Guard) -> &'g Limiter<C> {
        if let Some(limiter) = self.limiters.get(&rate, guard) {
            return limiter;
        }
        let largest = rate.amount().get().max(rate.burst().get());
        let scale = largest.div_ceil(u64::from(u32::MAX));
        let amount = u32::try_from(rate.amount().get().div_ceil(scale)).unwrap_or(u32::MAX);
        let burst = u32::try_from(rate.burst().get().div_ceil(scale)).unwrap_or(u32::MAX);
        let per_unit = (rate.period() / amount).max(Duration::from_nanos(1));
        let quota = Quota::with_period(per_unit)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let store = Store {
            tats: Arc::new(papaya::HashMap::with_hasher(RandomState::default())),
            sweep_at: Arc::new(AtomicUsize::new(MIN_SWEEP_AT)),
            clock: self.clock.clone(),
            started: Arc::new(OnceLock::new()),
        };
        let limiter: RateLimiter<RuleKey, Store<C>, C, StateInformationMiddleware> =
            RateLimiter::<RuleKey, Store<C>, C, NoOpMiddleware<C::Instant>>::new(
                quota,
                store.clone(),
                self.clock.clone(),
            )
            .with_middleware::<StateInformationMiddleware>();
        let _ = store.started.set(self.clock.now());
        let t = per_unit.as_nanos() as u64;
        let limiter = Arc::new(Limiter {
            limiter,
            store,
            t,
            tau: t * (u64::from(burst) - 1),
            burst: u64::from(burst),
            scale,
        });
        self.limiters.get_or_insert(rate, limiter, guard)
    }

    fn check_now(&self, checks: &[Check]) -> Decision {
        let mut states = States::new();
        let guard = self.limiters.guard();
        let mut charged: SmallVec<[(&Limiter<C>, &Check); INLINE_RULES]> = SmallVec::new();
        for (index, check) in checks.iter().enumerate() {
            let limiter = self.limiter(check.rate, &guard);
            let limit = check.rate.amount().get();
            let cost_cells = limiter.cells(check.cost);
            let cost = u32::try_from(cost_cells).ok().and_then(NonZeroU32::new);
            let outcome = match cost {
                Some(cost) => limiter.limiter.check_key_n(&check.key, cost),
                None => Err(governor::InsufficientCapacity(0)),
            };
            let denied = match outcome {
                Ok(Ok(snapshot)) => {
                    let remaining_cells = u64::from(snapshot.remaining_burst_capacity());
                    states.push(QuotaState {
                        limit,
                        remaining: (remaining_cells * limiter.scale).min(rate_burst(check)),
                        reset: Duration::from_nanos(
                            (limiter.burst - remaining_cells.min(limiter.burst)) * limiter.t,
                        ),
                    });
                    charged.push((limiter, check));
                    continue;
                }
                Ok(Err(not_until)) => {
                    // GCRA: the request fits once the key's arrival time is `wait` closer, so
                    // the room left now is its cost less the units `wait` replenishes.
                    let wait = not_until.wait_time_from(self.clock.now());
                    let wait_nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                    let remaining_cells = cost_cells
                        .saturating_sub(wait_nanos.div_ceil(limiter.t))
                        .min(limiter.burst);
                    let remaining = (remaining_cells * limiter.scale).min(rate_burst(check));
                    let extra = (cost_cells - 1) * limiter.t;
                    let reset = wait + Duration::from_nanos(limiter.tau.saturating_sub(extra));
                    Decision::Denied {
                        index,
                        state: QuotaState {
                            limit,
                            remaining,
                            reset,
                        },
                        retry_after: Some(wait),
                    }
                }
                Err(_) => Decision::Denied {
                    index,
                    state: QuotaState {
                        limit,
                        remaining: 0,
                        reset: Duration::ZERO,
                    },
                    retry_after: None,
                },
            };
            for (limiter, check) in charged {
                limiter.give_back(check);
            }
            return denied;
        }
        Decision::Allowed(states)
    }
}

/// The most units a check's rule allows at once.
fn rate_burst(check: &Check) -> u64 {
    check.rate.burst().get()
}

impl<C> RateLimitBackend for GovernorBackend<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    type Future = Ready<Result<Decision, BoxError>>;

    fn check(&self, checks: &[Check]) -> Self::Future {
        ready(Ok(self.check_now(checks)))
    }

    fn refund(&self, checks: &[Check]) {
        let guard = self.limiters.guard();
        for check in checks {
            self.limiter(check.rate, &guard).give_back(check);
        }
    }
}
