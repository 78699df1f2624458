//! Settling a request to its real cost, and telling the usage sink about it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use serde::Serialize;
use tollgate_core::admission::poll_now;
use tollgate_core::{Endpoint, Prices, Telemetry, Usage};

use crate::{CapReservation, CapStore, Ledger, LedgerError, Micros, Reservation, Settlement};

/// What to charge when no usage arrives (the client went away mid-stream, or the upstream
/// sent none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoUsagePolicy {
    /// Charge what was observed: the prompt estimate plus output tokens estimated from the
    /// streamed text (a token per 4 bytes), capped at the reservation. The default: the
    /// provider bills the tokens it generated whether or not the client read them, and this
    /// is the closest honest figure the gateway has.
    #[default]
    ChargeObserved,
    /// Keep the whole reservation: never undercharge, at the price of overcharging.
    KeepReservation,
}

/// How usage was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// From the upstream's `usage`.
    Observed,
    /// Estimated by the no-usage policy.
    Estimated,
    /// Nothing was charged (the request failed).
    None,
}

/// One finished request, for billing and analysis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    /// The request id, when one was set.
    pub request_id: Option<String>,
    /// The caller's key id.
    pub key_id: Arc<str>,
    /// The account charged.
    pub account: Arc<str>,
    /// The model that served the request.
    pub model: Arc<str>,
    /// The metered endpoint's path (`/v1/embeddings`), when the routing layer named one.
    pub endpoint: Option<&'static str>,
    /// Prompt tokens, as the upstream reported them (or as estimated, see `usage`).
    pub prompt_tokens: u64,
    /// Of the prompt tokens, those the provider read from its prompt cache, charged at the
    /// model's cached-input price (at most `prompt_tokens`; 0 when estimated).
    pub cached_tokens: u64,
    /// Completion tokens, as the upstream reported them (or as estimated, see `usage`).
    pub completion_tokens: u64,
    /// Of the completion tokens, those spent reasoning, as reported (charged as completion
    /// tokens, once: they are part of `completion_tokens`).
    pub reasoning_tokens: u64,
    /// What the ledger took, in micro-units: the account's balance dropped by exactly this
    /// (0 when the settlement itself failed).
    pub cost: Micros,
    /// What the request owed before any cap, in micro-units: the tokens above at the model's
    /// prices (the whole reservation under [`NoUsagePolicy::KeepReservation`], 0 for a failed
    /// request). Above `cost` when the request was capped.
    pub uncapped_cost: Micros,
    /// The ledger took less than `uncapped_cost`: the upstream used more than the reservation
    /// allowed for (it ignored `max_tokens`), and the charge stopped at the reservation plus
    /// what the balance held, so the balance never goes negative, or at what the key's spend
    /// caps had room for, so no cap is exceeded. Also set when an estimated charge stopped at
    /// the reservation, or a settlement failed.
    pub capped: bool,
    /// The response status.
    pub status: u16,
    /// From the request reaching the gate to its settlement, in milliseconds.
    pub latency_ms: u64,
    /// How usage was known.
    pub usage: UsageSource,
}

/// Receives one record per finished request.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tollgate_balance::{UsageRecord, UsageSink};
///
/// #[derive(Clone, Default)]
/// struct Collect(Arc<Mutex<Vec<UsageRecord>>>);
///
/// impl UsageSink for Collect {
///     fn record(&self, record: UsageRecord) {
///         self.0.lock().unwrap().push(record);
///     }
/// }
/// ```
pub trait UsageSink: Send + Sync + 'static {
    /// A request finished.
    fn record(&self, record: UsageRecord);

    /// Makes what was recorded durable, as far as the sink can (writes out buffers, syncs
    /// files); nothing by default.
    ///
    /// [`NonBlockingUsageSink`](crate::NonBlockingUsageSink)'s thread calls it on the sink it
    /// runs when the queue has been idle for a while and before it exits. The gate itself never
    /// calls it, so a sink may block here.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use tollgate_balance::{UsageRecord, UsageSink};
    ///
    /// /// Keeps records in memory until flushed, then prints them.
    /// #[derive(Default)]
    /// struct Batch(Mutex<Vec<UsageRecord>>);
    ///
    /// impl UsageSink for Batch {
    ///     fn record(&self, record: UsageRecord) {
    ///         self.0.lock().unwrap().push(record);
    ///     }
    ///
    ///     fn flush(&self) {
    ///         for record in self.0.lock().unwrap().drain(..) {
    ///             println!("{}", serde_json::to_string(&record).unwrap());
    ///         }
    ///     }
    /// }
    ///
    /// let batch = Batch::default();
    /// batch.flush();
    /// assert!(batch.0.lock().unwrap().is_empty());
    /// ```
    fn flush(&self) {}
}

/// Writes each record as one JSON line at INFO on the `tollgate::usage` tracing target.
///
/// ```
/// use tollgate_balance::{BalanceGateLayer, InMemoryLedger, TracingUsageSink};
///
/// let layer = BalanceGateLayer::new(InMemoryLedger::new()).usage_sink(TracingUsageSink);
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingUsageSink;

impl UsageSink for TracingUsageSink {
    fn record(&self, record: UsageRecord) {
        // Serialized only for a subscriber that keeps it: the JSON is most of the cost.
        if tracing::enabled!(target: "tollgate::usage", tracing::Level::INFO)
            && let Ok(line) = serde_json::to_string(&record)
        {
            tracing::info!(target: "tollgate::usage", "{line}");
        }
    }
}

/// How a response ended, as far as billing goes.
pub(crate) enum Ending {
    /// The upstream reported usage.
    Usage(Usage),
    /// No usage: charge by the policy, with this many bytes of output seen.
    NoUsage { output_bytes: usize },
    /// The request failed: charge nothing.
    Failed,
}

/// Everything needed to settle one request, whichever way it ends. Settles once: when told
/// how it ended, or (as if no usage came) when dropped.
pub(crate) struct Accountant<L: Ledger, C: CapStore> {
    pub(crate) ledger: Arc<L>,
    pub(crate) reservation: Option<Reservation>,
    /// What the key's spend caps hold, and where, when it has caps (a caller without them
    /// costs no reference to the store).
    pub(crate) caps: Option<(Arc<C>, CapReservation)>,
    pub(crate) prices: Prices,
    pub(crate) prompt_estimate: u64,
    pub(crate) policy: NoUsagePolicy,
    pub(crate) sink: Option<Arc<dyn UsageSink>>,
    pub(crate) record: RecordBase,
    pub(crate) started: Instant,
    /// The request's telemetry, when something measures it: told the headroom and the cost.
    pub(crate) telemetry: Option<Telemetry>,
}

/// What the usage record says besides the charge; turned into strings only when a sink wants
/// the record.
pub(crate) struct RecordBase {
    pub(crate) request_id: Option<http::HeaderValue>,
    pub(crate) key_id: Arc<str>,
    pub(crate) account: Arc<str>,
    pub(crate) model: Arc<str>,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) status: u16,
}

impl<L: Ledger, C: CapStore> Accountant<L, C> {
    /// The ledger reserved the request's worst case.
    pub(crate) fn admitted(&self, reservation: &Reservation) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.set_balance_unreserved(reservation.remaining);
        }
    }

    pub(crate) fn finish(&mut self, ending: Ending) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let (usage, source) = match ending {
            Ending::Usage(usage) => (usage, UsageSource::Observed),
            // Nothing is known of a cache: every prompt token is estimated at the input price.
            Ending::NoUsage { output_bytes } => (
                Usage::new(self.prompt_estimate, output_bytes.div_ceil(4) as u64),
                UsageSource::Estimated,
            ),
            Ending::Failed => (Usage::default(), UsageSource::None),
        };
        let owed = match (source, self.policy) {
            (UsageSource::None, _) => 0,
            (UsageSource::Estimated, NoUsagePolicy::KeepReservation) => reservation.amount,
            (UsageSource::Estimated, NoUsagePolicy::ChargeObserved)
            | (UsageSource::Observed, _) => self.prices.usage_cost(&usage),
        };
        if let Some(telemetry) = &self.telemetry
            && source != UsageSource::None
        {
            telemetry.set_usage(usage, owed);
        }
        // An estimate is a guess, so it never charges past what was set aside; reported usage
        // is asked for in full, and the ledger stops it at the reservation plus the balance.
        let asked = match source {
            UsageSource::Estimated => owed.min(reservation.amount),
            UsageSource::Observed | UsageSource::None => owed,
        };
        // Built now, while the request's parts are at hand; completed with what the ledger
        // really took once the settlement (perhaps asynchronous) is done.
        let report = self.sink.clone().map(|sink| {
            let base = &self.record;
            let record = UsageRecord {
                request_id: base
                    .request_id
                    .as_ref()
                    .and_then(|id| id.to_str().ok())
                    .map(str::to_owned),
                key_id: base.key_id.clone(),
                account: base.account.clone(),
                model: base.model.clone(),
                endpoint: base.endpoint.map(Endpoint::path),
                prompt_tokens: usage.prompt_tokens,
                cached_tokens: usage.cached_prompt_tokens(),
                completion_tokens: usage.completion_tokens,
                reasoning_tokens: usage.reasoning_tokens,
                cost: 0,
                uncapped_cost: owed,
                capped: false,
                status: base.status,
                latency_ms: 0,
                usage: source,
            };
            (sink, record)
        });
        let started = self.started;
        let settle: Settling<L, C> = match self.caps.take() {
            // The caps first: the ledger then takes no more than they counted, so a cap holds
            // even against an upstream that ignored `max_tokens`.
            Some((caps, cap_reservation)) => Settling::Caps {
                caps: caps.settle(cap_reservation, asked),
                ledger: self.ledger.clone(),
                reservation: Some(reservation),
                asked,
            },
            None => Settling::Ledger(self.ledger.settle(reservation, asked)),
        };
        run(settle, move |settled| {
            let charged = match settled {
                Ok(settlement) => settlement.charged,
                Err(error) => {
                    tracing::error!(error = %error, "settling a reservation failed");
                    0
                }
            };
            if let Some((sink, mut record)) = report {
                record.cost = charged;
                record.capped = charged < owed;
                record.latency_ms = started.elapsed().as_millis() as u64;
                sink.record(record);
            }
        });
    }
}

impl<L: Ledger, C: CapStore> Drop for Accountant<L, C> {
    fn drop(&mut self) {
        self.finish(Ending::NoUsage { output_bytes: 0 });
    }
}

/// Settling a request: its spend caps, then its balance by what the caps counted.
enum Settling<L: Ledger, C: CapStore> {
    Caps {
        caps: C::Settle,
        ledger: Arc<L>,
        reservation: Option<Reservation>,
        asked: Micros,
    },
    Ledger(L::Settle),
}

impl<L: Ledger, C: CapStore> Future for Settling<L, C> {
    type Output = Result<Settlement, LedgerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match this {
                Settling::Ledger(settle) => return Pin::new(settle).poll(cx),
                Settling::Caps {
                    caps,
                    ledger,
                    reservation,
                    asked,
                } => {
                    let charged = match ready!(Pin::new(caps).poll(cx)) {
                        Ok(settled) => settled.charged.min(*asked),
                        Err(error) => {
                            // The cap's hold expires by itself; the balance is still charged.
                            tracing::error!(error = %error, "settling a cap reservation failed");
                            *asked
                        }
                    };
                    let Some(reservation) = reservation.take() else {
                        return Poll::Ready(Err(LedgerError::Unavailable(
                            "settlement polled after completion".into(),
                        )));
                    };
                    *this = Settling::Ledger(ledger.settle(reservation, charged));
                }
            }
        }
    }
}

/// Runs a ledger or cap store future: at once when it is ready (the in-memory stores), else
/// on a task.
pub(crate) fn run<F>(mut future: F, done: impl FnOnce(F::Output) + Send + 'static)
where
    F: Future + Send + Unpin + 'static,
    F::Output: Send,
{
    match poll_now(&mut future) {
        Some(output) => done(output),
        None => match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { done(future.await) });
            }
            Err(_) => tracing::error!("a settlement needs a Tokio runtime to finish"),
        },
    }
}
