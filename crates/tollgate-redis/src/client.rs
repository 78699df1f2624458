//! One multiplexed connection per gateway replica (to a node or a cluster), and what every
//! call through it goes through: a per-call timeout and a breaker shared by all backends.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tollgate_core::BoxError;

/// How long a call may take by default before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// What a backend does when Redis does not answer in time (or the breaker is open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse the request: 503 `service_unavailable`, retryable, with `Retry-After`. The
    /// default: no request runs unchecked.
    #[default]
    Closed,
    /// Let the request through unchecked, log a warning (at most once per
    /// [`WARN_INTERVAL`]) and count it in [`Redis::failed_open`].
    Open,
}

/// The least time between two fail-open warnings of one backend.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Where the Redis is and how calls to it behave.
///
/// ```
/// use std::time::Duration;
/// use tollgate_redis::RedisConfig;
///
/// let single = RedisConfig::new("redis://127.0.0.1:6379").timeout(Duration::from_millis(20));
/// let cluster = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .key_prefix("gw-eu")
///     .breaker(5, Duration::from_millis(200));
/// assert_eq!(cluster.prefix(), "gw-eu");
/// # let _ = single;
/// ```
#[derive(Clone, Debug)]
pub struct RedisConfig {
    nodes: Vec<String>,
    cluster: bool,
    timeout: Duration,
    prefix: Arc<str>,
    breaker_failures: u32,
    breaker_cool_down: Duration,
}

impl RedisConfig {
    /// A single Redis (or a primary behind a proxy), such as `redis://127.0.0.1:6379`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            nodes: vec![url.into()],
            cluster: false,
            timeout: DEFAULT_TIMEOUT,
            prefix: Arc::from("tollgate"),
            breaker_failures: 5,
            breaker_cool_down: Duration::from_millis(200),
        }
    }

    /// A Redis Cluster, found through any of these nodes.
    pub fn cluster<I, U>(urls: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        RedisConfig {
            nodes: urls.into_iter().map(Into::into).collect(),
            cluster: true,
            ..RedisConfig::new(String::new())
        }
    }

    /// How long one call may take ([`DEFAULT_TIMEOUT`] by default); a call that takes longer
    /// fails as if Redis were down.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The first part of every key (`tollgate` by default), so several gateways can share
    /// one Redis.
    pub fn key_prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// After `failures` failed calls in a row, stop calling Redis for `cool_down`, then let
    /// one call probe it (5 and 200 ms by default): a dead Redis costs no waiting.
    pub fn breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker_failures = failures.max(1);
        self.breaker_cool_down = cool_down;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn first_node(&self) -> &str {
        self.nodes.first().map_or("", String::as_str)
    }
}

/// A connection to Redis shared by the backends: one multiplexed connection (per
/// cluster node, for a cluster) that pipelines every concurrent call, reconnects by itself,
/// and is cheap to clone.
///
/// ```no_run
/// use tollgate_redis::{Redis, RedisConfig};
///
/// # async fn run() -> Result<(), tollgate_core::BoxError> {
/// let redis = Redis::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let limits = redis.rate_limiter();
/// let ledger = redis.ledger();
/// let keys = redis.key_store().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redis {
    pub(crate) connection: Connection,
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: RedisConfig,
    pub(crate) breaker: Breaker,
    failed_open: AtomicU64,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("nodes", &self.shared.config.nodes)
            .field("cluster", &self.shared.config.cluster)
            .field("breaker_open", &self.shared.breaker.is_open())
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects. A single node is connected lazily (the gateway can start while Redis is
    /// still coming up); a cluster is asked for its slots now.
    pub async fn connect(config: RedisConfig) -> Result<Self, BoxError> {
        let connection = if config.cluster {
            let client = ClusterClientBuilder::new(config.nodes.clone())
                .connection_timeout(config.timeout.max(Duration::from_millis(250)))
                .response_timeout(config.timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()?;
            Connection::Cluster(client.get_async_connection().await?)
        } else {
            let url = config.nodes.first().ok_or("no Redis URL")?;
            let client = redis::Client::open(url.as_str())?;
            Connection::Single(ConnectionManager::new_lazy_with_config(
                client,
                reconnecting(config.timeout),
            )?)
        };
        let breaker = Breaker::new(config.breaker_failures, config.breaker_cool_down);
        Ok(Redis {
            connection,
            shared: Arc::new(Shared {
                config,
                breaker,
                failed_open: AtomicU64::new(0),
            }),
        })
    }

    /// How many calls were let through unchecked because Redis failed (backends set to
    /// [`OnFailure::Open`]).
    pub fn failed_open(&self) -> u64 {
        self.shared.failed_open.load(Ordering::Relaxed)
    }

    /// Whether the breaker is open now (Redis is considered down).
    pub fn breaker_open(&self) -> bool {
        self.shared.breaker.is_open()
    }

    pub(crate) fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Runs `call` on a clone of the connection, within the timeout and the breaker.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, BoxError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let breaker = &self.shared.breaker;
        if !breaker.admit() {
            return Err("Redis is considered down (breaker open)".into());
        }
        let outcome = tokio::time::timeout(self.config().timeout, call(self.connection.clone()));
        match outcome.await {
            Ok(Ok(value)) => {
                breaker.succeeded();
                Ok(value)
            }
            Ok(Err(error)) => {
                breaker.failed();
                Err(error.into())
            }
            Err(_) => {
                breaker.failed();
                Err(format!("Redis did not answer within {:?}", self.config().timeout).into())
            }
        }
    }

    /// Counts one request let through unchecked, and warns about it at most once per
    /// [`WARN_INTERVAL`] per `warned` clock.
    pub(crate) fn note_failed_open(&self, what: &str, error: &BoxError, warned: &WarnClock) {
        self.shared.failed_open.fetch_add(1, Ordering::Relaxed);
        if warned.due() {
            tracing::warn!(error = %error, backend = what, failed_open = self.failed_open(), "Redis failed; admitting requests unchecked");
        }
    }
}

/// A manager that keeps reconnecting quickly: a Redis that comes back is used again within
/// a fraction of a second.
fn reconnecting(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100))
        .set_number_of_retries(3)
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
        .set_response_timeout(Some(timeout))
}

/// The connection: a manager for one node, or a cluster connection that routes each script
/// by the slot of its keys.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Stops calls to a Redis that failed `failures` times in a row, for `cool_down`; then lets
/// one call through as a probe, and closes again when it succeeds.
pub(crate) struct Breaker {
    failures: u32,
    cool_down: Duration,
    epoch: Instant,
    in_a_row: AtomicU32,
    /// While open: until when, in nanoseconds since `epoch`; 0 when closed.
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    fn new(failures: u32, cool_down: Duration) -> Self {
        Breaker {
            failures,
            cool_down,
            epoch: Instant::now(),
            in_a_row: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    /// Whether a call may go to Redis now.
    fn admit(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        // Open: after the cool-down, one call probes.
        self.now() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    fn succeeded(&self) {
        if self.in_a_row.load(Ordering::Relaxed) != 0 {
            self.in_a_row.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Acquire) != 0 {
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            tracing::info!("Redis answers again; breaker closed");
        }
    }

    fn failed(&self) {
        let in_a_row = self.in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row >= self.failures {
            let until = self
                .now()
                .saturating_add(self.cool_down.as_nanos() as u64)
                .max(1);
            if self.open_until.swap(until, Ordering::AcqRel) == 0 {
                tracing::error!(failures = in_a_row, "Redis is failing; breaker open");
            }
            self.probing.store(false, Ordering::Release);
        }
    }
}

/// When a backend last warned about failing open.
#[derive(Default)]
pub(crate) struct WarnClock {
    /// Seconds since `UNIX_EPOCH` of the last warning.
    last: AtomicU64,
}

impl WarnClock {
    fn due(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        (last == 0 || now >= last + WARN_INTERVAL.as_secs())
            && self
                .last
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_and_one_probe_closes_it() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        breaker.failed();
        breaker.failed();
        breaker.succeeded();
        breaker.failed();
        breaker.failed();
        assert!(
            breaker.admit(),
            "two in a row after a success keep it closed"
        );
        breaker.failed();
        assert!(breaker.is_open());
        assert!(!breaker.admit(), "open: no call during the cool-down");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.admit(), "after the cool-down one call probes");
        assert!(!breaker.admit(), "only one");
        breaker.failed();
        assert!(!breaker.admit(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.admit());
        breaker.succeeded();
        assert!(!breaker.is_open());
        assert!(breaker.admit() && breaker.admit(), "closed again");
    }

    #[test]
    fn the_warning_clock_allows_one_warning_per_interval() {
        let clock = WarnClock::default();
        assert!(clock.due());
        assert!(!clock.due());
    }
}
