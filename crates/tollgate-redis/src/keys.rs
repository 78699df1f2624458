//! `RedisKeyStore`: key digests and principals in Redis, a local cache in front, and
//! invalidation by pub/sub.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::Either;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushInfo, PushKind, Script, Value};
use tollgate_auth::{KeyDigest, KeyRecord, KeyStore};
use tollgate_core::{BoxError, Principal, Rate, SpendCap};

use crate::client::{OnFailure, Redis};

static KEY_ADMIN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("keys.lua")));

/// How long a looked-up key is trusted without asking Redis again, by default. Changes reach
/// every replica at once by pub/sub; this bounds how stale a cache can be if an invalidation
/// is lost.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// The future of a lookup: on the spot from the cache, else a round trip.
pub type LookupFuture = Either<
    Ready<Result<Option<KeyRecord>, BoxError>>,
    Pin<Box<dyn Future<Output = Result<Option<KeyRecord>, BoxError>> + Send>>,
>;

/// The most keys a replica caches: unknown keys are cached too, so a flood of made-up keys
/// must not grow it without bound.
const MAX_CACHED: usize = 100_000;

/// Looked-up keys, and since when they can be trusted.
#[derive(Default)]
struct Cache {
    entries: papaya::HashMap<KeyDigest, Cached, foldhash::fast::RandomState>,
    clock: Clock,
    /// Entries fetched before this (nanoseconds on `clock`) may have missed an invalidation:
    /// they are only a fallback for failing open.
    trusted_since: AtomicU64,
}

struct Clock(Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(Instant::now())
    }
}

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[derive(Clone)]
struct Cached {
    record: Option<KeyRecord>,
    /// When it was fetched, in nanoseconds on the cache's clock.
    fetched: u64,
}

impl Cache {
    /// The entry, if it was fetched within `ttl` and after the last gap in invalidations.
    fn fresh(&self, digest: &KeyDigest, ttl: Duration) -> Option<Option<KeyRecord>> {
        let entries = self.entries.pin();
        let cached = entries.get(digest)?;
        let now = self.clock.now();
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        (cached.fetched >= self.trusted_since.load(Ordering::Acquire)
            && now.saturating_sub(cached.fetched) < ttl)
            .then(|| cached.record.clone())
    }

    fn stale(&self, digest: &KeyDigest) -> Option<Option<KeyRecord>> {
        self.entries
            .pin()
            .get(digest)
            .map(|cached| cached.record.clone())
    }

    /// Caches what was fetched at `fetched` (read before the round trip, so that an
    /// invalidation arriving during it is not overwritten by an older answer).
    fn put(&self, digest: KeyDigest, record: Option<KeyRecord>, fetched: u64) {
        let entries = self.entries.pin();
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(digest, Cached { record, fetched });
    }

    fn forget(&self, digest: &KeyDigest) {
        self.entries.pin().remove(digest);
    }

    /// Distrusts every entry fetched until now.
    fn distrust_all(&self) {
        self.trusted_since
            .store(self.clock.now(), Ordering::Release);
    }
}

/// API keys in Redis, shared by every gateway replica: only SHA-256 digests are stored, one
/// hash per key, `{prefix}:key:{keys}:<digest hex>` (and an index of key ids,
/// `{prefix}:key:{keys}:ids`), with the fields
///
/// | field | value |
/// |---|---|
/// | `id` | the key id (logged, recorded in usage) |
/// | `account` | the account it bills |
/// | `models` | the models it may use, comma-separated; absent: all |
/// | `request_quota`, `token_quota` | its own limits, `amount/period_ms[/burst]` (`60/60000`) |
/// | `spend_caps` | its spend caps, comma-separated: `5000000/month,250000/day` (micro-units) |
/// | `revoked` | `1` when revoked |
/// | `expires_at` | when it stops working, in Unix seconds |
///
/// Lookups are answered from a local cache (no round trip) for up to the
/// [cache time to live](RedisKeyStore::cache_ttl), unknown keys included. Every change made
/// through [`insert`](RedisKeyStore::insert), [`revoke`](RedisKeyStore::revoke) or
/// [`remove`](RedisKeyStore::remove) is published on `{prefix}:keys:changed`, and every
/// replica drops that key from its cache when the message arrives (within milliseconds); a
/// replica whose subscription drops clears its whole cache, and again once it has
/// resubscribed. An operator who edits a hash by hand publishes the digest on that channel.
///
/// Failing open (see [`on_failure`](RedisKeyStore::on_failure)) keeps answering keys already
/// cached, however old, while Redis is down; an uncached key is never admitted unchecked.
///
/// ```no_run
/// use tollgate_auth::{KeyDigest, KeyRecord, KeyStore};
/// use tollgate_core::Principal;
/// use tollgate_redis::{Redis, RedisConfig};
///
/// # async fn run() -> Result<(), tollgate_core::BoxError> {
/// let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let keys = redis.key_store().await?;
/// let digest = KeyDigest::of("sk-live-alice");
/// keys.insert(&digest, &KeyRecord::new(Principal::new("key_alice", "acct_alice"))).await?;
/// assert!(keys.lookup(&digest).await?.is_some());
/// keys.revoke(&digest).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisKeyStore {
    redis: Redis,
    cache: Arc<Cache>,
    ttl: Duration,
    on_failure: OnFailure,
    channel: Arc<str>,
    /// Keeps the subscription open for as long as the store lives.
    _subscription: Arc<ConnectionManager>,
}

impl fmt::Debug for RedisKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyStore")
            .field("redis", &self.redis)
            .field("cached", &self.cache.entries.len())
            .field("cache_ttl", &self.ttl)
            .field("on_failure", &self.on_failure)
            .finish()
    }
}

impl Redis {
    /// The key store on this connection, subscribed to key changes (it connects the
    /// subscription now, so Redis must be reachable). Fails closed by default.
    pub async fn key_store(&self) -> Result<RedisKeyStore, BoxError> {
        let config = self.config();
        let channel: Arc<str> = Arc::from(format!("{}:keys:changed", config.prefix()));
        let cache: Arc<Cache> = Arc::default();
        let url = config.first_node();
        let info = redis::IntoConnectionInfo::into_connection_info(url)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let weak = Arc::downgrade(&cache);
        let subscription_config = ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_push_sender(move |push: PushInfo| {
                invalidate(&weak, push);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
        let mut subscription =
            ConnectionManager::new_with_config(client, subscription_config).await?;
        subscription.subscribe(&*channel).await?;
        Ok(RedisKeyStore {
            redis: self.clone(),
            cache,
            ttl: DEFAULT_CACHE_TTL,
            on_failure: OnFailure::Closed,
            channel,
            _subscription: Arc::new(subscription),
        })
    }
}

/// Acts on one push from the subscription.
fn invalidate(cache: &Weak<Cache>, push: PushInfo) {
    let Some(cache) = cache.upgrade() else {
        return;
    };
    match push.kind {
        PushKind::Message => {
            let digest = match push.data.get(1) {
                Some(Value::BulkString(bytes)) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(KeyDigest::from_hex),
                _ => None,
            };
            match digest {
                Some(digest) => cache.forget(&digest),
                // Anything else on the channel ("*"): every key may have changed.
                None => cache.distrust_all(),
            }
        }
        // Changes may have been missed while the subscription was down.
        PushKind::Disconnection | PushKind::Subscribe => cache.distrust_all(),
        _ => {}
    }
}

impl RedisKeyStore {
    /// How long a lookup is trusted without asking Redis ([`DEFAULT_CACHE_TTL`] by default;
    /// `Duration::ZERO` asks every time).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// What to do when Redis fails ([`OnFailure::Closed`] by default): failing open answers
    /// from the cache however old its entry; a key not in the cache is refused either way.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Stores `record` under `digest` (replacing what was there) and tells every replica.
    pub async fn insert(&self, digest: &KeyDigest, record: &KeyRecord) -> Result<(), BoxError> {
        self.put("put", digest, record).await.map(drop)
    }

    /// Stores `record` under `digest` unless a key is there already (so seeding from a config
    /// file at every start keeps revocations); `true` if stored.
    pub async fn insert_if_absent(
        &self,
        digest: &KeyDigest,
        record: &KeyRecord,
    ) -> Result<bool, BoxError> {
        self.put("create", digest, record).await
    }

    async fn put(
        &self,
        command: &str,
        digest: &KeyDigest,
        record: &KeyRecord,
    ) -> Result<bool, BoxError> {
        let mut fields = vec![
            ("id", record.principal.key_id().to_owned()),
            ("account", record.principal.account_id().to_owned()),
        ];
        if let Some(models) = record.principal.allowed_models() {
            let models: Vec<&str> = models.iter().map(|model| &**model).collect();
            fields.push(("models", models.join(",")));
        }
        if let Some(rate) = record.principal.request_quota() {
            fields.push(("request_quota", quota_text(rate)));
        }
        if let Some(rate) = record.principal.token_quota() {
            fields.push(("token_quota", quota_text(rate)));
        }
        let caps = record.principal.spend_caps();
        if !caps.is_empty() {
            let caps: Vec<String> = caps.iter().map(ToString::to_string).collect();
            fields.push(("spend_caps", caps.join(",")));
        }
        if record.revoked {
            fields.push(("revoked", "1".to_owned()));
        }
        if let Some(at) = record.expires_at {
            let secs = at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            fields.push(("expires_at", secs.to_string()));
        }
        let mut args = vec![command.to_owned(), record.principal.key_id().to_owned()];
        for (field, value) in fields {
            args.push(field.to_owned());
            args.push(value);
        }
        self.admin(digest, args).await
    }

    /// Marks the key revoked everywhere; `false` if there is no such key.
    pub async fn revoke(&self, digest: &KeyDigest) -> Result<bool, BoxError> {
        self.admin(digest, vec!["revoke".to_owned()]).await
    }

    /// Deletes the key everywhere; `false` if there is no such key.
    pub async fn remove(&self, digest: &KeyDigest) -> Result<bool, BoxError> {
        self.admin(digest, vec!["remove".to_owned()]).await
    }

    async fn admin(&self, digest: &KeyDigest, args: Vec<String>) -> Result<bool, BoxError> {
        let key = self.key(digest);
        let index = self.index();
        let hex = digest.to_hex();
        let channel = &*self.channel;
        let changed: i64 = self
            .redis
            .call(|mut connection| async move {
                let mut invocation = KEY_ADMIN.prepare_invoke();
                invocation.key(&key).key(&index).arg(channel).arg(&hex);
                for arg in &args {
                    invocation.arg(arg);
                }
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        // This replica does not wait for its own message.
        self.cache.forget(digest);
        Ok(changed == 1)
    }

    /// Every key's hash shares one hash tag with the index, so a change to both is one
    /// script on Redis Cluster too (lookups are cached, so that slot sees little traffic).
    fn key(&self, digest: &KeyDigest) -> String {
        format!(
            "{}:key:{{keys}}:{}",
            self.redis.config().prefix(),
            digest.to_hex()
        )
    }

    /// The index of key ids: id → digest (hex).
    fn index(&self) -> String {
        format!("{}:key:{{keys}}:ids", self.redis.config().prefix())
    }

    /// Every key, read from Redis (not the cache): for administration, not the hot path.
    pub async fn records(&self) -> Result<Vec<(KeyDigest, KeyRecord)>, BoxError> {
        let index = self.index();
        let ids: HashMap<String, String> = self
            .redis
            .call(|mut connection| async move {
                redis::cmd("HGETALL")
                    .arg(&index)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let mut records = Vec::with_capacity(ids.len());
        for hex in ids.values() {
            let digest = KeyDigest::from_hex(hex)
                .ok_or_else(|| BoxError::from(format!("key index holds {hex:?}")))?;
            let key = self.key(&digest);
            let fields: HashMap<String, String> = self
                .redis
                .call(|mut connection| async move {
                    redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
            if let Some(record) = parse_record(&fields)? {
                records.push((digest, record));
            }
        }
        records.sort_by(|(_, a), (_, b)| a.principal.key_id().cmp(b.principal.key_id()));
        Ok(records)
    }

    async fn fetch(&self, digest: KeyDigest) -> Result<Option<KeyRecord>, BoxError> {
        let key = self.key(&digest);
        let asked = self.cache.clock.now();
        let fetched = self
            .redis
            .call(|mut connection| async move {
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async::<HashMap<String, String>>(&mut connection)
                    .await
            })
            .await;
        match fetched {
            Ok(fields) => {
                let record = parse_record(&fields)?;
                self.cache.put(digest, record.clone(), asked);
                Ok(record)
            }
            Err(error) if self.on_failure == OnFailure::Open => {
                self.cache.stale(&digest).ok_or(error)
            }
            Err(error) => Err(error),
        }
    }
}

impl KeyStore for RedisKeyStore {
    type Future = LookupFuture;

    fn lookup(&self, digest: &KeyDigest) -> Self::Future {
        if let Some(record) = self.cache.fresh(digest, self.ttl) {
            return Either::Left(ready(Ok(record)));
        }
        let this = self.clone();
        let digest = *digest;
        Either::Right(Box::pin(async move { this.fetch(digest).await }))
    }
}

fn quota_text(rate: Rate) -> String {
    let period = rate.period().as_millis();
    let amount = rate.amount();
    if rate.burst() == amount {
        format!("{amount}/{period}")
    } else {
        format!("{amount}/{period}/{}", rate.burst())
    }
}

fn parse_quota(text: &str) -> Result<Rate, BoxError> {
    let bad = || BoxError::from(format!("quota {text:?} is not amount/period_ms[/burst]"));
    let mut parts = text.split('/');
    let amount: u64 = parts
        .next()
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    let period: u64 = parts
        .next()
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    let mut rate = Rate::new(amount, Duration::from_millis(period))?;
    if let Some(burst) = parts.next() {
        rate = rate.with_burst(burst.trim().parse().map_err(|_| bad())?)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(rate)
}

/// The record in a key's hash; `None` when there is no hash. A hash that does not parse is
/// an error (503), not an unknown key: the operator's mistake must be visible.
fn parse_record(fields: &HashMap<String, String>) -> Result<Option<KeyRecord>, BoxError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| BoxError::from(format!("key hash without `{name}`")))
    };
    let mut principal = Principal::new(field("id")?.as_str(), field("account")?.as_str());
    if let Some(models) = fields.get("models") {
        principal = principal.with_allowed_models(models.split(',').map(str::trim));
    }
    if let Some(quota) = fields.get("request_quota") {
        principal = principal.with_request_quota(parse_quota(quota)?);
    }
    if let Some(quota) = fields.get("token_quota") {
        principal = principal.with_token_quota(parse_quota(quota)?);
    }
    if let Some(caps) = fields.get("spend_caps") {
        let caps = caps
            .split(',')
            .map(|cap| cap.trim().parse::<SpendCap>())
            .collect::<Result<Vec<_>, _>>()?;
        principal = principal.with_spend_caps(caps);
    }
    let mut record = KeyRecord::new(principal);
    if fields.get("revoked").is_some_and(|value| value == "1") {
        record = record.revoked();
    }
    if let Some(at) = fields.get("expires_at") {
        let secs: u64 = at
            .parse()
            .map_err(|_| BoxError::from(format!("expires_at {at:?} is not Unix seconds")))?;
        record = record.expires_at(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    }
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_round_trip_through_their_text() {
        let rate = Rate::per_minute(60).unwrap();
        assert_eq!(quota_text(rate), "60/60000");
        assert_eq!(parse_quota("60/60000").unwrap(), rate);
        let burst = Rate::per_second(10).unwrap().with_burst(3).unwrap();
        assert_eq!(parse_quota(&quota_text(burst)).unwrap(), burst);
        for bad in ["60", "60/x", "0/1000", "1/1000/0", "1/2/3/4"] {
            assert!(parse_quota(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hash_reads_back_as_the_record() {
        let fields: HashMap<String, String> = [
            ("id", "key_1"),
            ("account", "acct_1"),
            ("models", "gpt-5.4, gpt-5.4-mini"),
            ("request_quota", "60/60000"),
            ("spend_caps", "5000000/month, 250000/day"),
            ("revoked", "1"),
            ("expires_at", "2000000000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let record = parse_record(&fields).unwrap().unwrap();
        assert_eq!(record.principal.key_id(), "key_1");
        assert!(record.principal.allows_model("gpt-5.4-mini"));
        assert!(!record.principal.allows_model("o3"));
        assert_eq!(
            record.principal.request_quota(),
            Some(Rate::per_minute(60).unwrap())
        );
        assert_eq!(record.principal.spend_caps().len(), 2);
        assert!(record.revoked);
        assert!(!record.is_expired(UNIX_EPOCH + Duration::from_secs(1_999_999_999)));
        assert!(parse_record(&HashMap::new()).unwrap().is_none());
        let without_account: HashMap<_, _> = [("id".to_owned(), "k".to_owned())].into();
        assert!(parse_record(&without_account).is_err());
    }
}
