//! `RedisLedger`: prepaid balances in Redis, reserve-then-settle in one Lua script.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tollgate_balance::{
    DEFAULT_RESERVATION_TTL, Ledger, LedgerError, Micros, Reservation, ReservationId, Settlement,
};
use tollgate_core::BoxError;

use crate::client::{OnFailure, Redis, WarnClock};

static LEDGER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("ledger.lua")));

/// The future of a reservation.
pub type ReserveFuture = Pin<Box<dyn Future<Output = Result<Reservation, LedgerError>> + Send>>;
/// The future of a settlement or a release.
pub type SettleFuture = Pin<Box<dyn Future<Output = Result<Settlement, LedgerError>> + Send>>;
/// The future of a balance read or a top-up.
pub type BalanceFuture = Pin<Box<dyn Future<Output = Result<Micros, LedgerError>> + Send>>;

/// Prepaid balances in Redis, shared by every gateway replica and kept across restarts: every
/// operation is one atomic Lua script on the account's keys, in integer micro-units.
///
/// An account is four keys with one hash tag, so they share a slot on Redis Cluster:
/// - `{prefix}:acct:{<account>}:balance`: micro-units available, reservations excluded.
///   An operator tops up with `INCRBY` (or [`Ledger::top_up`]);
/// - `{prefix}:acct:{<account>}:holds`: open reservations, id → micro-units held;
/// - `{prefix}:acct:{<account>}:deadlines`: when each open reservation expires (ms);
/// - `{prefix}:acct:{<account>}:expired`: reservations that expired unsettled, kept an hour
///   so that their late settlement still charges what was used.
///
/// Reservations are idempotent by id and expire after the
/// [time to live](RedisLedger::reservation_ttl): a gateway that crashed mid-request does not
/// hold its accounts' money for more than that. Expired reservations flow back at the
/// account's next operation (any replica's), read from the server's clock.
///
/// ```no_run
/// use std::sync::Arc;
/// use tollgate_balance::{Ledger, ReservationId};
/// use tollgate_redis::{Redis, RedisConfig};
///
/// # async fn run() -> Result<(), tollgate_core::BoxError> {
/// let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let ledger = redis.ledger();
/// ledger.top_up("acct_1", 1_000_000).await?;
/// let account: Arc<str> = Arc::from("acct_1");
/// let reservation = ledger.reserve(ReservationId::new(), &account, 30_000).await?;
/// let settled = ledger.settle(reservation, 12_500).await?;
/// assert_eq!(settled.balance, 987_500);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLedger {
    redis: Redis,
    on_failure: OnFailure,
    ttl: Duration,
    /// Reservations let through while Redis was down (failing open): their settlement
    /// charges the balance directly.
    unbacked: Arc<papaya::HashSet<ReservationId>>,
    warned: Arc<WarnClock>,
}

impl fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLedger")
            .field("redis", &self.redis)
            .field("on_failure", &self.on_failure)
            .field("reservation_ttl", &self.ttl)
            .finish()
    }
}

impl Redis {
    /// The ledger on this connection (fails closed, reservations live
    /// [`DEFAULT_RESERVATION_TTL`]).
    pub fn ledger(&self) -> RedisLedger {
        RedisLedger {
            redis: self.clone(),
            on_failure: OnFailure::Closed,
            ttl: DEFAULT_RESERVATION_TTL,
            unbacked: Arc::default(),
            warned: Arc::default(),
        }
    }
}

/// The four keys of an account.
struct AccountKeys([String; 4]);

impl AccountKeys {
    fn new(prefix: &str, account: &str) -> Self {
        let key = |part: &str| format!("{prefix}:acct:{{{account}}}:{part}");
        AccountKeys([
            key("balance"),
            key("holds"),
            key("deadlines"),
            key("expired"),
        ])
    }
}

impl RedisLedger {
    /// What to do when Redis fails ([`OnFailure::Closed`] by default). Failing open admits
    /// the request with nothing reserved; its settlement charges the balance directly if
    /// Redis is back by then.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// How long a reservation stays open ([`DEFAULT_RESERVATION_TTL`] by default): above the
    /// longest request, streams included, and as short as that allows, since it is how long
    /// a crashed gateway's reservations hold money.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Gives `account` its opening balance unless it has a balance already (so seeding from
    /// a config file at every start keeps what was spent and topped up); `true` if set.
    /// Balances stay below 2^53 micro-units (the ledger's scripts compute in Lua's doubles):
    /// a larger opening, or a top-up past it, is an error and changes nothing.
    pub async fn open_account(&self, account: &str, opening: Micros) -> Result<bool, BoxError> {
        let opening = opening.to_string();
        let set: i64 = self.script(account, &["open", &opening]).await?;
        Ok(set == 1)
    }

    /// The open reservations of `account`.
    pub async fn open_reservations(&self, account: &str) -> Result<Vec<Reservation>, BoxError> {
        let holds: Vec<String> = self.script(account, &["holds"]).await?;
        let account: Arc<str> = Arc::from(account);
        holds
            .chunks_exact(2)
            .map(|pair| {
                Ok(Reservation {
                    id: pair[0].parse()?,
                    account: account.clone(),
                    amount: pair[1].parse()?,
                    remaining: 0,
                })
            })
            .collect()
    }

    /// Runs the ledger script for `account`.
    async fn script<T: redis::FromRedisValue>(
        &self,
        account: &str,
        args: &[&str],
    ) -> Result<T, BoxError> {
        let keys = AccountKeys::new(self.redis.config().prefix(), account);
        self.redis
            .call(|mut connection| async move {
                let mut invocation = LEDGER.prepare_invoke();
                for key in &keys.0 {
                    invocation.key(key);
                }
                for arg in args {
                    invocation.arg(*arg);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await
    }

    async fn reserve_now(
        &self,
        id: ReservationId,
        account: Arc<str>,
        amount: Micros,
    ) -> Result<Reservation, LedgerError> {
        let id_text = id.to_string();
        let amount_text = amount.to_string();
        let ttl = self.ttl.as_millis().max(1).to_string();
        let args = ["reserve", &id_text, &amount_text, &ttl];
        let mut reply = self.script::<Vec<i64>>(&account, &args).await;
        if reply.is_err() && !self.redis.breaker_open() {
            // The first call may have reserved before it timed out: the same id cannot
            // reserve twice, so trying again is safe.
            reply = self.script::<Vec<i64>>(&account, &args).await;
        }
        match reply {
            Ok(reply) => match reply.as_slice() {
                [1, held, available] => Ok(Reservation {
                    id,
                    account,
                    amount: micros(*held),
                    remaining: micros(*available),
                }),
                [0, available] => Err(LedgerError::Insufficient {
                    balance: micros(*available),
                    required: amount,
                }),
                other => Err(LedgerError::Unavailable(
                    format!("unexpected ledger reply {other:?}").into(),
                )),
            },
            Err(error) if self.on_failure == OnFailure::Open => {
                self.redis.note_failed_open("ledger", &error, &self.warned);
                self.unbacked.pin().insert(id);
                Ok(Reservation {
                    id,
                    account,
                    amount: 0,
                    remaining: 0,
                })
            }
            Err(error) => Err(LedgerError::Unavailable(error)),
        }
    }

    async fn settle_now(
        &self,
        reservation: Reservation,
        actual: Micros,
    ) -> Result<Settlement, LedgerError> {
        let unbacked = self.unbacked.pin().remove(&reservation.id);
        let args = [
            "settle",
            &reservation.id.to_string(),
            &actual.to_string(),
            if unbacked { "1" } else { "0" },
        ];
        let reply: Vec<i64> = self
            .script(&reservation.account, &args)
            .await
            .map_err(LedgerError::Unavailable)?;
        match reply.as_slice() {
            [charged, balance] => Ok(Settlement {
                charged: micros(*charged),
                balance: micros(*balance),
            }),
            other => Err(LedgerError::Unavailable(
                format!("unexpected ledger reply {other:?}").into(),
            )),
        }
    }
}

/// Micro-units from the script (a balance an operator set below zero reads as zero).
fn micros(value: i64) -> Micros {
    Micros::try_from(value).unwrap_or(0)
}

impl Ledger for RedisLedger {
    type Reserve = ReserveFuture;
    type Settle = SettleFuture;
    type Balance = BalanceFuture;

    fn reserve(&self, id: ReservationId, account: &Arc<str>, amount: Micros) -> Self::Reserve {
        let this = self.clone();
        let account = account.clone();
        Box::pin(async move { this.reserve_now(id, account, amount).await })
    }

    fn settle(&self, reservation: Reservation, actual: Micros) -> Self::Settle {
        let this = self.clone();
        Box::pin(async move { this.settle_now(reservation, actual).await })
    }

    fn release(&self, reservation: Reservation) -> Self::Settle {
        self.settle(reservation, 0)
    }

    fn balance(&self, account: &str) -> Self::Balance {
        let this = self.clone();
        let account = account.to_owned();
        Box::pin(async move {
            let balance: i64 = this
                .script(&account, &["balance"])
                .await
                .map_err(LedgerError::Unavailable)?;
            Ok(micros(balance))
        })
    }

    fn top_up(&self, account: &str, amount: Micros) -> Self::Balance {
        let this = self.clone();
        let account = account.to_owned();
        Box::pin(async move {
            let amount = amount.to_string();
            let balance: i64 = this
                .script(&account, &["top_up", &amount])
                .await
                .map_err(LedgerError::Unavailable)?;
            Ok(micros(balance))
        })
    }
}
