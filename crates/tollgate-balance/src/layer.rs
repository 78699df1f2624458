use std::sync::Arc;

use crate::{Ledger, NoUsagePolicy, UsageSink};

/// Gates requests on a prepaid balance and charges them their real cost.
///
/// - The account is the [`Principal`](tollgate_core::Principal)'s; the price is the resolved
///   [`ModelInfo`](tollgate_core::ModelInfo)'s (a response that names another model in its
///   extensions, after a fallback, settles at that model's price). Requests without both pass
///   through unbilled.
/// - Before the request: reserve the estimate, prompt tokens × input price + requested
///   completion tokens (`max_completion_tokens` / `max_tokens`, else the model's max output) ×
///   output price. No credit → 402 `insufficient_balance` "Your prepaid credit has run out...";
///   not enough → 402 saying what the request may cost and what is left; details
///   `{balance, required}`.
/// - After: settle to the real cost from `usage` — at the end of a JSON body (only its tail is
///   kept) or from the final SSE chunk (observed through the
///   [`SsePassthroughLayer`](tollgate_sse::SsePassthroughLayer)'s single parse when it is in
///   the stack, else by wrapping the stream itself). An error response, or an upstream that
///   fails mid-stream, releases the reservation. No usage (client gone mid-stream) → the
///   [`NoUsagePolicy`], `ChargeObserved` by default.
/// - Optionally, `x-tollgate-balance` on the response: the balance left after the
///   reservation, in micro-units.
/// - A [`UsageSink`] gets one [`UsageRecord`](crate::UsageRecord) per finished request.
///
/// Put it inside `SsePassthroughLayer` (so streams are parsed once and usage injection feeds
/// it) and just before the upstream.
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

    /// Adds `x-tollgate-balance` (micro-units left after the reservation) to responses.
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
