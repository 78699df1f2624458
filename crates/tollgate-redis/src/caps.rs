//! `RedisCapStore`: spend caps per API key in Redis, reserve-then-settle in one Lua script.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use redis::Script;
use tollgate_balance::{
    CapError, CapExceeded, CapReservation, CapSettlement, CapStore, CapUsage,
    DEFAULT_RESERVATION_TTL, Micros, ReservationId, RollingSlots,
};
use tollgate_core::spend::{CapPeriod, CapWindow, unix_millis};
use tollgate_core::{BoxError, SpendCap};

use crate::client::{OnFailure, Redis, WarnClock};

static CAPS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("caps.lua")));

/// How long a window's spend is kept after the window ended: a late settlement still finds it,
/// and operators can read last period's spend.
const KEPT_AFTER: Duration = Duration::from_secs(3600);

/// The future of a cap reservation.
pub type CapReserveFuture = Pin<Box<dyn Future<Output = Result<CapReservation, CapError>> + Send>>;
/// The future of a cap settlement or release.
pub type CapSettleFuture = Pin<Box<dyn Future<Output = Result<CapSettlement, CapError>> + Send>>;
/// The future of a cap usage read.
pub type CapUsageFuture = Pin<Box<dyn Future<Output = Result<Vec<CapUsage>, CapError>> + Send>>;

/// Spend caps per API key in Redis, shared by every gateway replica: every operation is one
/// atomic Lua script on the key's caps, so a reservation holds on all of them or none, and
/// concurrent requests on any replica can never spend past a cap.
///
/// **Keys.** All of an API key's cap state carries its hash tag `{k:<key id>}` (the rate
/// limiter's tag for the key), so it lives in one slot on Redis Cluster:
/// - `{prefix}:cap:{k:<key id>}:<period>:<window>`: micro-units spent in a calendar window,
///   such as `tollgate:cap:{k:key_1}:month:2026-12`, `…:week:2026-W53` or `…:day:2026-12-31`
///   (read it with `GET`); kept an hour past the window's end;
/// - `{prefix}:cap:{k:<key id>}:rolling:<period ms>`: a rolling cap's spend by slot
///   ([`RollingSlots`]; read it with `HGETALL`);
/// - `{prefix}:cap:{k:<key id>}:held`: micro-units held by requests in flight, per window;
/// - `…:holds`, `…:deadlines`, `…:expired`: the open reservations, when they expire, and
///   those that expired unsettled (kept an hour), as in the
///   [`RedisLedger`](crate::RedisLedger).
///
/// **Clocks.** The gateway's clock (the instant the balance layer passes, its
/// [`cap_clock`](tollgate_balance::BalanceGateLayer::cap_clock)) decides which window a request
/// falls in; the window is computed in Rust and named in the keys. Calendar math needs no Lua,
/// tests can move the clock across month ends against a real Redis, and each window's count
/// stays exact whatever the clock: replicas whose clocks disagree by a few milliseconds at
/// midnight only disagree on which side of it a request lands. The Redis server's clock
/// decides only when reservations expire, as for balances.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use tollgate_balance::{BalanceGateLayer, CapStore, ReservationId};
/// use tollgate_core::SpendCap;
/// use tollgate_redis::{Redis, RedisConfig};
///
/// # async fn run() -> Result<(), tollgate_core::BoxError> {
/// let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let layer = BalanceGateLayer::new(redis.ledger()).spend_caps(redis.cap_store());
/// let caps = redis.cap_store();
/// let monthly: Arc<[SpendCap]> = Arc::from([SpendCap::monthly(50_000_000)?]);
/// let key: Arc<str> = Arc::from("key_1");
/// let reservation = caps.reserve(ReservationId::new(), &key, &monthly, 30_000, SystemTime::now()).await?;
/// assert_eq!(caps.settle(reservation, 12_500).await?.charged, 12_500);
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCapStore {
    redis: Redis,
    on_failure: OnFailure,
    ttl: Duration,
    /// Reservations let through while Redis was down (failing open): their settlement counts
    /// what they spent, whatever the room.
    unbacked: Arc<papaya::HashSet<ReservationId>>,
    warned: Arc<WarnClock>,
}

impl fmt::Debug for RedisCapStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCapStore")
            .field("redis", &self.redis)
            .field("on_failure", &self.on_failure)
            .field("reservation_ttl", &self.ttl)
            .finish()
    }
}

impl Redis {
    /// The spend-cap store on this connection (fails closed, reservations live
    /// [`DEFAULT_RESERVATION_TTL`]).
    pub fn cap_store(&self) -> RedisCapStore {
        RedisCapStore {
            redis: self.clone(),
            on_failure: OnFailure::Closed,
            ttl: DEFAULT_RESERVATION_TTL,
            unbacked: Arc::default(),
            warned: Arc::default(),
        }
    }
}

/// The keys and arguments of one key's caps at one instant.
struct Plan {
    keys: Vec<String>,
    /// Six per cap, as `caps.lua` reads them.
    fields: Vec<String>,
    /// Each cap's calendar window (`None`: rolling).
    windows: Vec<Option<CapWindow>>,
}

impl Plan {
    fn new(prefix: &str, key_id: &str, caps: &[SpendCap], at: SystemTime, ttl: Duration) -> Self {
        let base = format!("{prefix}:cap:{{k:{key_id}}}:");
        let mut keys: Vec<String> = ["holds", "held", "deadlines", "expired"]
            .iter()
            .map(|part| format!("{base}{part}"))
            .collect();
        let mut fields = Vec::with_capacity(caps.len() * 6);
        let mut windows = Vec::with_capacity(caps.len());
        let kept = KEPT_AFTER + ttl;
        for cap in caps {
            let window = cap.period().window(at);
            let (kind, label, slot, oldest, keep) = match cap.period() {
                CapPeriod::Rolling(length) => {
                    let slots = RollingSlots::new(length);
                    let label = format!("rolling:{}", slots.period_millis());
                    // A slot counts for at most two periods.
                    (
                        "r",
                        label,
                        slots.slot(at),
                        slots.oldest(at),
                        length * 2 + kept,
                    )
                }
                // A calendar period always has a window.
                calendar => {
                    let end = window.map_or(at, |window| window.end());
                    let name = window.map_or_else(String::new, |window| window.to_string());
                    let left = end.duration_since(at).unwrap_or_default();
                    (
                        "c",
                        format!("{}:{name}", calendar.name()),
                        0,
                        0,
                        left + kept,
                    )
                }
            };
            keys.push(format!("{base}{label}"));
            fields.extend([
                kind.to_owned(),
                label,
                cap.limit().to_string(),
                slot.to_string(),
                oldest.to_string(),
                keep.as_millis().max(1).to_string(),
            ]);
            windows.push(window);
        }
        Plan {
            keys,
            fields,
            windows,
        }
    }

    /// When `cap` (the plan's `index`th) lets a request fit again, from the script's slot.
    fn resets_at(
        &self,
        index: usize,
        cap: &SpendCap,
        slot: Option<i64>,
        at: SystemTime,
    ) -> SystemTime {
        match (self.windows.get(index).copied().flatten(), cap.period()) {
            (Some(window), _) => window.end(),
            (None, CapPeriod::Rolling(length)) => {
                slot.map_or(at, |slot| RollingSlots::new(length).frees_at(slot))
            }
            (None, _) => at,
        }
    }
}

impl RedisCapStore {
    /// What to do when Redis fails ([`OnFailure::Closed`] by default). Failing open admits
    /// the request with nothing held; its settlement counts what it spent if Redis is back by
    /// then.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// How long a reservation holds ([`DEFAULT_RESERVATION_TTL`] by default): as the
    /// ledger's, above the longest request.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn plan(&self, key_id: &str, caps: &[SpendCap], at: SystemTime) -> Plan {
        Plan::new(self.redis.config().prefix(), key_id, caps, at, self.ttl)
    }

    /// Runs the caps script.
    async fn script(&self, plan: &Plan, args: &[&str]) -> Result<Vec<i64>, BoxError> {
        self.redis
            .call(|mut connection| async move {
                let mut invocation = CAPS.prepare_invoke();
                for key in &plan.keys {
                    invocation.key(key);
                }
                for arg in args {
                    invocation.arg(*arg);
                }
                for field in &plan.fields {
                    invocation.arg(field);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await
    }

    async fn reserve_now(
        &self,
        id: ReservationId,
        key_id: Arc<str>,
        caps: Arc<[SpendCap]>,
        amount: Micros,
        at: SystemTime,
    ) -> Result<CapReservation, CapError> {
        let plan = self.plan(&key_id, &caps, at);
        let (id_text, amount_text) = (id.to_string(), amount.to_string());
        let at_text = unix_millis(at).to_string();
        let ttl = self.ttl.as_millis().max(1).to_string();
        let count = caps.len().to_string();
        let args = ["reserve", &id_text, &amount_text, &at_text, &ttl, &count];
        let mut reply = self.script(&plan, &args).await;
        if reply.is_err() && !self.redis.breaker_open() {
            // The first call may have reserved before it timed out: the same id cannot
            // reserve twice, so trying again is safe.
            reply = self.script(&plan, &args).await;
        }
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) if self.on_failure == OnFailure::Open => {
                self.redis
                    .note_failed_open("spend caps", &error, &self.warned);
                self.unbacked.pin().insert(id);
                return Ok(CapReservation {
                    id,
                    key_id,
                    caps,
                    amount: 0,
                    at,
                });
            }
            Err(error) => return Err(CapError::Unavailable(error)),
        };
        match reply.as_slice() {
            [1, held, first_at] => Ok(CapReservation {
                id,
                key_id,
                caps,
                amount: micros(*held),
                at: tollgate_core::spend::from_unix_millis(*first_at),
            }),
            [0, refusals @ ..] if !refusals.is_empty() && refusals.len() % 5 == 0 => {
                let mut binding: Option<CapExceeded> = None;
                for refusal in refusals.chunks_exact(5) {
                    let &[index, spent, held, has_slot, slot] = refusal else {
                        continue;
                    };
                    let index = usize::try_from(index - 1).unwrap_or(usize::MAX);
                    let Some(cap) = caps.get(index) else {
                        return Err(unexpected(&reply));
                    };
                    let slot = (has_slot == 1).then_some(slot);
                    let exceeded = CapExceeded {
                        cap: *cap,
                        spent: micros(spent),
                        reserved: micros(held),
                        required: amount,
                        resets_at: plan.resets_at(index, cap, slot, at),
                    };
                    // The cap that resets last binds: the request fits no earlier.
                    if binding.is_none_or(|current| exceeded.resets_at > current.resets_at) {
                        binding = Some(exceeded);
                    }
                }
                binding.map_or_else(|| Err(unexpected(&reply)), |b| Err(CapError::Exceeded(b)))
            }
            _ => Err(unexpected(&reply)),
        }
    }

    async fn settle_now(
        &self,
        reservation: CapReservation,
        actual: Micros,
    ) -> Result<CapSettlement, CapError> {
        let unbacked = self.unbacked.pin().remove(&reservation.id);
        let plan = self.plan(&reservation.key_id, &reservation.caps, reservation.at);
        let count = reservation.caps.len().to_string();
        let args = [
            "settle",
            &reservation.id.to_string(),
            &actual.to_string(),
            if unbacked { "1" } else { "0" },
            &count,
        ];
        let reply = self
            .script(&plan, &args)
            .await
            .map_err(CapError::Unavailable)?;
        match reply.as_slice() {
            [charged] => Ok(CapSettlement {
                charged: micros(*charged),
            }),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn usage_now(
        &self,
        key_id: &str,
        caps: &[SpendCap],
        at: SystemTime,
    ) -> Result<Vec<CapUsage>, CapError> {
        let plan = self.plan(key_id, caps, at);
        let count = caps.len().to_string();
        let reply = self
            .script(&plan, &["usage", &count])
            .await
            .map_err(CapError::Unavailable)?;
        if reply.len() != caps.len() * 4 {
            return Err(unexpected(&reply));
        }
        Ok(caps
            .iter()
            .zip(reply.chunks_exact(4))
            .enumerate()
            .map(|(index, (cap, counted))| CapUsage {
                cap: *cap,
                spent: micros(counted[0]),
                reserved: micros(counted[1]),
                resets_at: plan.resets_at(index, cap, (counted[2] == 1).then_some(counted[3]), at),
            })
            .collect())
    }
}

/// Micro-units from the script (a count an operator set below zero reads as zero).
fn micros(value: i64) -> Micros {
    Micros::try_from(value).unwrap_or(0)
}

fn unexpected(reply: &[i64]) -> CapError {
    CapError::Unavailable(format!("unexpected caps reply {reply:?}").into())
}

impl CapStore for RedisCapStore {
    type Reserve = CapReserveFuture;
    type Settle = CapSettleFuture;
    type Usage = CapUsageFuture;

    fn reserve(
        &self,
        id: ReservationId,
        key_id: &Arc<str>,
        caps: &Arc<[SpendCap]>,
        amount: Micros,
        at: SystemTime,
    ) -> Self::Reserve {
        let this = self.clone();
        let (key_id, caps) = (key_id.clone(), caps.clone());
        Box::pin(async move { this.reserve_now(id, key_id, caps, amount, at).await })
    }

    fn settle(&self, reservation: CapReservation, actual: Micros) -> Self::Settle {
        let this = self.clone();
        Box::pin(async move { this.settle_now(reservation, actual).await })
    }

    fn release(&self, reservation: CapReservation) -> Self::Settle {
        self.settle(reservation, 0)
    }

    fn usage(&self, key_id: &str, caps: &[SpendCap], at: SystemTime) -> Self::Usage {
        let this = self.clone();
        let (key_id, caps) = (key_id.to_owned(), caps.to_vec());
        Box::pin(async move { this.usage_now(&key_id, &caps, at).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_named_in_the_keys_with_the_key_hash_tag() {
        // 2026-12-31T23:59:59Z
        let at = tollgate_core::spend::from_unix_millis(1_798_761_599_000);
        let caps = [
            SpendCap::daily(1).unwrap(),
            SpendCap::weekly(1).unwrap(),
            SpendCap::monthly(1).unwrap(),
            SpendCap::rolling(1, Duration::from_secs(3_600)).unwrap(),
        ];
        let plan = Plan::new("tollgate", "key_1", &caps, at, Duration::from_secs(600));
        assert_eq!(
            &plan.keys[4..],
            [
                "tollgate:cap:{k:key_1}:day:2026-12-31",
                "tollgate:cap:{k:key_1}:week:2026-W53",
                "tollgate:cap:{k:key_1}:month:2026-12",
                "tollgate:cap:{k:key_1}:rolling:3600000",
            ]
        );
        assert_eq!(plan.keys[0], "tollgate:cap:{k:key_1}:holds");
        // A second before the window's end, plus the reservation's time to live and an hour.
        assert_eq!(plan.fields[5], (1_000 + 600_000 + 3_600_000).to_string());
        assert_eq!(&plan.fields[18..21], ["r", "rolling:3600000", "1"]);
    }
}
