use std::sync::Arc;

use crate::{Ledger, NoUsagePolicy, UsageSink};

/// Gates requests on a prepaid balance and charges them their real cost.
///
/// What it checks and answers is described once, in the [crate documentation](crate).
///
/// ```
/// use tollgate_balance::{BalanceGateLayer, InMemoryLedger, NoUsagePolicy, TracingUsageSink};
///
/// let layer = BalanceGateLayer::new(InMemoryLedger::new())
///     .balance_header(true)
///     .no_usage_policy(NoUsagePolicy::KeepReservation)
///     .usage_sink(TracingUsageSink);
/// # let _ = layer;
/// ```
pub struct BalanceGateLayer<L> {
    pub(crate) config: Arc<Config<L>>,
}

pub(crate) struct Config<L> {
    pub(crate) ledger: Arc<L>,
    pub(crate) balance_header: bool,
    pub(crate) policy: NoUsagePolicy,
    pub(crate) sink: Option<Arc<dyn UsageSink>>,
}

impl<L> Clone for BalanceGateLayer<L> {
    fn clone(&self) -> Self {
        BalanceGateLayer {
            config: self.config.clone(),
        }
    }
}

impl<L> std::fmt::Debug for BalanceGateLayer<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalanceGateLayer")
            .field("balance_header", &self.config.balance_header)
            .field("policy", &self.config.policy)
            .field("sink", &self.config.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl<L: Ledger> BalanceGateLayer<L> {
    /// Gates on `ledger`'s balances.
    pub fn new(ledger: L) -> Self {
        BalanceGateLayer::with_shared_ledger(Arc::new(ledger))
    }

    /// Gates on a ledger you also hold (to top up, or read balances).
    pub fn with_shared_ledger(ledger: Arc<L>) -> Self {
        BalanceGateLayer {
            config: Arc::new(Config {
                ledger,
                balance_header: false,
                policy: NoUsagePolicy::default(),
                sink: None,
            }),
        }
    }

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

    fn with(self, change: impl FnOnce(&mut Config<L>)) -> Self {
        let mut config = Config {
            ledger: self.config.ledger.clone(),
            balance_header: self.config.balance_header,
            policy: self.config.policy,
            sink: self.config.sink.clone(),
        };
        change(&mut config);
        BalanceGateLayer {
            config: Arc::new(config),
        }
    }
}
