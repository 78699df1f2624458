//! Where the demo gateway keeps its state: in memory by default, or in Redis when the
//! configuration has a `[redis]` section, so that every replica shares limits, balances and
//! keys.
//!
//! Each backend is an enum over the two, so the stack has one type either way and the
//! in-memory path keeps its ready futures.

use std::future::Ready;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::Either;
use tollgate::auth::{InMemoryKeyStore, KeyDigest, KeyRecord, KeyStore};
use tollgate::balance::{
    CapReservation, CapStore, InMemoryCapStore, InMemoryLedger, Ledger, LedgerError, Micros,
    Reservation, ReservationId, Settlement,
};
use tollgate::core::BoxError;
use tollgate::core::SpendCap;
use tollgate::ratelimit::{Check, GovernorBackend, RateLimitBackend};
use tollgate_admin::{AccountAdmin, AdminFuture, KeyAdmin};

use tollgate_redis::{
    Redis, RedisCapStore, RedisConfig, RedisKeyStore, RedisLedger, RedisRateLimiter,
};

use crate::config::{Config, RedisSettings};

/// Where limits, balances, spend caps and keys live.
pub struct Backends {
    pub limits: Limits,
    pub ledger: Balances,
    pub caps: Caps,
    pub keys: Keys,
}

impl Backends {
    /// The backends `config` asks for, seeded with its keys and opening balances. With Redis,
    /// seeding leaves keys and accounts that exist already as they are, so a restart keeps
    /// what was spent, topped up or revoked.
    pub async fn from_config(config: &Config) -> Result<Backends, String> {
        let keys = InMemoryKeyStore::from_file(&config.auth).map_err(|e| e.to_string())?;
        match &config.redis {
            None => {
                let ledger = Arc::new(InMemoryLedger::new());
                for account in &config.accounts {
                    let top_up = ledger.top_up(&account.id, account.balance).await;
                    top_up.map_err(|e| e.to_string())?;
                }
                Ok(Backends {
                    limits: Limits::Memory(GovernorBackend::new()),
                    ledger: Balances::Memory(ledger),
                    caps: Caps::Memory(InMemoryCapStore::new()),
                    keys: Keys::Memory(keys),
                })
            }
            Some(redis) => redis_backends(redis, config, &keys).await,
        }
    }
}

async fn redis_backends(
    settings: &RedisSettings,
    config: &Config,
    seed: &InMemoryKeyStore,
) -> Result<Backends, String> {
    let connection = match (&settings.url, &settings.cluster) {
        (Some(url), None) => RedisConfig::new(url.as_str()),
        (None, Some(nodes)) if !nodes.is_empty() => RedisConfig::cluster(nodes.clone()),
        _ => return Err("[redis]: set exactly one of `url` and `cluster`".into()),
    };
    let connection = connection
        .timeout(settings.timeout())
        .key_prefix(settings.key_prefix.as_str());
    let redis = Redis::connect(connection)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let ttl = settings.reservation_ttl(&config.upstream);
    let ledger = redis
        .ledger()
        .on_failure(settings.balance_on_failure.into())
        .reservation_ttl(ttl);
    let caps = redis
        .cap_store()
        .on_failure(settings.balance_on_failure.into())
        .reservation_ttl(ttl);
    for account in &config.accounts {
        let opened = ledger.open_account(&account.id, account.balance).await;
        opened.map_err(|e| format!("redis: account {}: {e}", account.id))?;
    }
    let keys = redis
        .key_store()
        .await
        .map_err(|e| format!("redis: {e}"))?
        .on_failure(settings.keys_on_failure.into())
        .cache_ttl(settings.key_cache_ttl());
    for (digest, record) in seed.records() {
        let created = keys.insert_if_absent(&digest, &record).await;
        created.map_err(|e| format!("redis: key {}: {e}", record.principal.key_id()))?;
    }
    let limits = redis
        .rate_limiter()
        .on_failure(settings.limits_on_failure.into());
    Ok(Backends {
        limits: Limits::Redis(limits),
        ledger: Balances::Redis(ledger),
        caps: Caps::Redis(caps),
        keys: Keys::Redis(keys),
    })
}

/// The rate-limit backend.
#[derive(Clone)]
pub enum Limits {
    Memory(GovernorBackend),
    Redis(RedisRateLimiter),
}

/// The ledger.
#[derive(Clone)]
pub enum Balances {
    Memory(Arc<InMemoryLedger>),
    Redis(RedisLedger),
}

/// The spend caps' store.
#[derive(Clone)]
pub enum Caps {
    Memory(InMemoryCapStore),
    Redis(RedisCapStore),
}

/// The key store.
#[derive(Clone)]
pub enum Keys {
    Memory(InMemoryKeyStore),
    Redis(RedisKeyStore),
}

impl Keys {
    /// How many keys this replica knows (Redis: none counted, they are looked up on demand).
    pub fn describe(&self) -> String {
        match self {
            Keys::Memory(keys) => format!("{} API keys", keys.len()),
            Keys::Redis(_) => "API keys in Redis".into(),
        }
    }
}

impl RateLimitBackend for Limits {
    type Future = Either<
        <GovernorBackend as RateLimitBackend>::Future,
        <RedisRateLimiter as RateLimitBackend>::Future,
    >;

    fn check(&self, checks: &[Check]) -> Self::Future {
        match self {
            Limits::Memory(limits) => Either::Left(limits.check(checks)),
            Limits::Redis(limits) => Either::Right(limits.check(checks)),
        }
    }

    fn refund(&self, checks: &[Check]) {
        match self {
            Limits::Memory(limits) => limits.refund(checks),
            Limits::Redis(limits) => limits.refund(checks),
        }
    }
}

type Ready2<T> = Ready<Result<T, LedgerError>>;

impl Ledger for Balances {
    type Reserve = Either<Ready2<Reservation>, <RedisLedger as Ledger>::Reserve>;
    type Settle = Either<Ready2<Settlement>, <RedisLedger as Ledger>::Settle>;
    type Balance = Either<Ready2<Micros>, <RedisLedger as Ledger>::Balance>;

    fn reserve(&self, id: ReservationId, account: &Arc<str>, amount: Micros) -> Self::Reserve {
        match self {
            Balances::Memory(ledger) => Either::Left(ledger.reserve(id, account, amount)),
            Balances::Redis(ledger) => Either::Right(ledger.reserve(id, account, amount)),
        }
    }

    fn settle(&self, reservation: Reservation, actual: Micros) -> Self::Settle {
        match self {
            Balances::Memory(ledger) => Either::Left(ledger.settle(reservation, actual)),
            Balances::Redis(ledger) => Either::Right(ledger.settle(reservation, actual)),
        }
    }

    fn release(&self, reservation: Reservation) -> Self::Settle {
        match self {
            Balances::Memory(ledger) => Either::Left(ledger.release(reservation)),
            Balances::Redis(ledger) => Either::Right(ledger.release(reservation)),
        }
    }

    fn balance(&self, account: &str) -> Self::Balance {
        match self {
            Balances::Memory(ledger) => Either::Left(ledger.balance(account)),
            Balances::Redis(ledger) => Either::Right(ledger.balance(account)),
        }
    }

    fn top_up(&self, account: &str, amount: Micros) -> Self::Balance {
        match self {
            Balances::Memory(ledger) => Either::Left(ledger.top_up(account, amount)),
            Balances::Redis(ledger) => Either::Right(ledger.top_up(account, amount)),
        }
    }
}

impl KeyStore for Keys {
    type Future =
        Either<Ready<Result<Option<KeyRecord>, BoxError>>, <RedisKeyStore as KeyStore>::Future>;

    fn lookup(&self, digest: &KeyDigest) -> Self::Future {
        match self {
            Keys::Memory(keys) => Either::Left(keys.lookup(digest)),
            Keys::Redis(keys) => Either::Right(keys.lookup(digest)),
        }
    }
}

impl KeyAdmin for Keys {
    fn records(&self) -> AdminFuture<'_, Vec<(KeyDigest, KeyRecord)>> {
        match self {
            Keys::Memory(keys) => KeyAdmin::records(keys),
            Keys::Redis(keys) => KeyAdmin::records(keys),
        }
    }

    fn store(&self, digest: KeyDigest, record: KeyRecord) -> AdminFuture<'_, ()> {
        match self {
            Keys::Memory(keys) => keys.store(digest, record),
            Keys::Redis(keys) => keys.store(digest, record),
        }
    }
}

impl AccountAdmin for Balances {
    fn held(&self, account: &str) -> AdminFuture<'_, Vec<Reservation>> {
        match self {
            Balances::Memory(ledger) => ledger.held(account),
            Balances::Redis(ledger) => ledger.held(account),
        }
    }
}

impl CapStore for Caps {
    type Reserve =
        Either<<InMemoryCapStore as CapStore>::Reserve, <RedisCapStore as CapStore>::Reserve>;
    type Settle =
        Either<<InMemoryCapStore as CapStore>::Settle, <RedisCapStore as CapStore>::Settle>;
    type Usage = Either<<InMemoryCapStore as CapStore>::Usage, <RedisCapStore as CapStore>::Usage>;

    fn reserve(
        &self,
        id: ReservationId,
        key_id: &Arc<str>,
        caps: &Arc<[SpendCap]>,
        amount: Micros,
        at: SystemTime,
    ) -> Self::Reserve {
        match self {
            Caps::Memory(store) => Either::Left(store.reserve(id, key_id, caps, amount, at)),
            Caps::Redis(store) => Either::Right(store.reserve(id, key_id, caps, amount, at)),
        }
    }

    fn settle(&self, reservation: CapReservation, actual: Micros) -> Self::Settle {
        match self {
            Caps::Memory(store) => Either::Left(store.settle(reservation, actual)),
            Caps::Redis(store) => Either::Right(store.settle(reservation, actual)),
        }
    }

    fn release(&self, reservation: CapReservation) -> Self::Settle {
        match self {
            Caps::Memory(store) => Either::Left(store.release(reservation)),
            Caps::Redis(store) => Either::Right(store.release(reservation)),
        }
    }

    fn usage(&self, key_id: &str, caps: &[SpendCap], at: SystemTime) -> Self::Usage {
        match self {
            Caps::Memory(store) => Either::Left(store.usage(key_id, caps, at)),
            Caps::Redis(store) => Either::Right(store.usage(key_id, caps, at)),
        }
    }
}
