use std::sync::Arc;
use std::time::SystemTime;

use crate::{CapStore, InMemoryCapStore, Ledger, NoUsagePolicy, UsageSink};

/// Gates requests on a prepaid balance and on the caller's spend caps, and charges them their
/// real cost.
///
/// What it checks and answers is described once, in the [crate documentation](crate).
///
/// ```
/// use tollgate_balance::{
///     BalanceGateLayer, CapExceededStatus, InMemoryCapStore, InMemoryLedger, NoUsagePolicy,
///     TracingUsageSink,
/// };
///
/// let layer = BalanceGateLayer::new(InMemoryLedger::new())
///     .balance_header(true)
///     .no_usage_policy(NoUsagePolicy::KeepReservation)
///     .usage_sink(TracingUsageSink)
///     .spend_caps(InMemoryCapStore::new())
///     .cap_exceeded_status(CapExceededStatus::TooManyRequests);
/// # let _ = layer;
/// ```
pub struct BalanceGateLayer<L, C = InMemoryCapStore> {
    pub(crate) config: Arc<Config<L, C>>,
}

/// What the gate answers when a spend cap has no room for a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CapExceededStatus {
    /// 402 `insufficient_balance`, code `budget_exceeded`: the default, as for a balance that
    /// ran out (SDKs do not retry it).
    #[default]
    PaymentRequired,
    /// 429 `rate_limit_exceeded`, code `budget_exceeded`, with `Retry-After` until the cap
    /// resets: for clients that queue work and wait.
    TooManyRequests,
}

/// Where the gate reads the time that decides a spend cap's window.
pub(crate) type CapClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

pub(crate) struct Config<L, C> {
    pub(crate) ledger: Arc<L>,
    pub(crate) caps: Arc<C>,
    pub(crate) clock: CapClock,
    pub(crate) cap_status: CapExceededStatus,
    pub(crate) balance_header: bool,
    pub(crate) policy: NoUsagePolicy,
    pub(crate) sink: Option<Arc<dyn UsageSink>>,
}

impl<L, C> Clone for BalanceGateLayer<L, C> {
    fn clone(&self) -> Self {
        BalanceGateLayer {
            config: self.config.clone(),
        }
    }
}

impl<L, C> std::fmt::Debug for BalanceGateLayer<L, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalanceGateLayer")
            .field("balance_header", &self.config.balance_header)
            .field("policy", &self.config.policy)
            .field("sink", &self.config.sink.is_some())
            .field("cap_status", &self.config.cap_status)
            .finish_non_exhaustive()
    }
}

impl<L: Ledger> BalanceGateLayer<L> {
    /// Gates on `ledger`'s balances, and on spend caps kept in this process
    /// ([`InMemoryCapStore`]; with several gateway replicas, give them a shared store with
    /// [`spend_caps`](BalanceGateLayer::spend_caps)).
    pub fn new(ledger: L) -> Self {
        BalanceGateLayer::with_shared_ledger(Arc::new(ledger))
    }

    /// Gates on a ledger you also hold (to top up, or read balances).
    pub fn with_shared_ledger(ledger: Arc<L>) -> Self {
        BalanceGateLayer {
            config: Arc::new(Config {
                ledger,
                caps: Arc::new(InMemoryCapStore::new()),
                clock: Arc::new(SystemTime::now),
                cap_status: CapExceededStatus::default(),
                balance_header: false,
                policy: NoUsagePolicy::default(),
                sink: None,
            }),
        }
    }
}

impl<L: Ledger, C: CapStore> BalanceGateLayer<L, C> {
    /// Adds `x-tollgate-balance-unreserved` (micro-units left after the reservation) to responses.
    pub fn balance_header(self, on: bool) -> Self {
        self.with(|config| config.balance_header = on)
    }

    /// What to charge when no usage arrives.
    pub fn no_usage_policy(self, policy: NoUsagePolicy) -> Self {
        self.with(|config| config.policy = policy)
    }

    /// Where finished requests are recorded.
    pub fn usage_sink(self, sink: impl UsageSink) -> Self {
        let sink: Arc<dyn UsageSink> = Arc::new(sink);
        self.with(|config| config.sink = Some(sink))
    }

    /// Where the callers' spend caps are counted (an [`InMemoryCapStore`] of this layer's own
    /// by default).
    pub fn spend_caps<C2: CapStore>(self, store: C2) -> BalanceGateLayer<L, C2> {
        self.with_shared_spend_caps(Arc::new(store))
    }

    /// Counts spend caps in a store you also hold (to read what keys spent).
    pub fn with_shared_spend_caps<C2: CapStore>(self, store: Arc<C2>) -> BalanceGateLayer<L, C2> {
        let config = &self.config;
        BalanceGateLayer {
            config: Arc::new(Config {
                ledger: config.ledger.clone(),
                caps: store,
                clock: config.clock.clone(),
                cap_status: config.cap_status,
                balance_header: config.balance_header,
                policy: config.policy,
                sink: config.sink.clone(),
            }),
        }
    }

    /// What a request gets when a spend cap has no room for it (402 by default).
    pub fn cap_exceeded_status(self, status: CapExceededStatus) -> Self {
        self.with(|config| config.cap_status = status)
    }

    /// The clock that decides which day, week or month a request's spend falls in
    /// ([`SystemTime::now`] by default): for tests that cross month ends, or to follow a
    /// clock of record.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tollgate_balance::{BalanceGateLayer, InMemoryLedger};
    ///
    /// let new_year = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600);
    /// let layer = BalanceGateLayer::new(InMemoryLedger::new()).cap_clock(move || new_year);
    /// # let _ = layer;
    /// ```
    pub fn cap_clock(self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        let clock: CapClock = Arc::new(clock);
        self.with(|config| config.clock = clock)
    }

    fn with(self, change: impl FnOnce(&mut Config<L, C>)) -> Self {
        let config = &self.config;
        let mut config = Config {
            ledger: config.ledger.clone(),
            caps: config.caps.clone(),
            clock: config.clock.clone(),
            cap_status: config.cap_status,
            balance_header: config.balance_header,
            policy: config.policy,
            sink: config.sink.clone(),
        };
        change(&mut config);
        BalanceGateLayer {
            config: Arc::new(config),
        }
    }
}
