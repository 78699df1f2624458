//! The demo gateway's configuration file: what each section means and how it becomes the
//! layers' settings. Every default is the library's own.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use tollgate::auth::KeyFile;
use tollgate::core::{BodyLimit, Rate};
use tollgate::models::CatalogFile;
use tollgate::ratelimit::{Limits, RateLimitBackend, RateLimitLayer};
use tollgate::routes::KnownRoutesLayer;
use tollgate::upstream::{RetryPolicy, Timeouts, Upstream};
use tollgate_redis::OnFailure;
use tollgate_testkit::ConnectionLimits;

/// The embedded default configuration (also the commented sample).
pub const DEFAULT_CONFIG: &str = include_str!("gateway.toml");

/// The gateway configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub guard: GuardConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub auth: KeyFile,
    #[serde(default)]
    pub routes: RoutesConfig,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// Limits, balances and keys in Redis, shared by every replica; in memory without it.
    pub redis: Option<RedisSettings>,
    /// The admin API on a listener of its own; off without it.
    pub admin: Option<AdminSettings>,
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Usage records as JSON-lines files; in the log only without it.
    pub usage: Option<UsageSettings>,
    pub catalog: CatalogFile,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Config {
    /// Parses a configuration file.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|error| format!("invalid gateway configuration: {error}"))
    }
}

/// What each client connection may do: how long its request head and its idle keep-alive may
/// take, how many connections are open at once, and how long shutdown waits for requests in
/// flight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = ConnectionLimits::default();
        ServerConfig {
            header_read_timeout_secs: limits.header_read_timeout().as_secs(),
            idle_timeout_secs: limits.idle_timeout().as_secs(),
            max_connections: limits.max_connections(),
            shutdown_grace_secs: limits.shutdown_grace().as_secs(),
        }
    }
}

impl ServerConfig {
    /// The limits the server applies to every connection. A timeout or a connection cap of 0
    /// would refuse every client, so it is an error.
    pub fn limits(&self) -> Result<ConnectionLimits, String> {
        let secs = |value: u64, field: &str| match value {
            0 => Err(format!("server.{field} must be at least 1")),
            secs => Ok(Duration::from_secs(secs)),
        };
        if self.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        Ok(ConnectionLimits::default()
            .with_header_read_timeout(secs(
                self.header_read_timeout_secs,
                "header_read_timeout_secs",
            )?)
            .with_idle_timeout(secs(self.idle_timeout_secs, "idle_timeout_secs")?)
            .with_max_connections(self.max_connections)
            .with_shutdown_grace(Duration::from_secs(self.shutdown_grace_secs)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: Option<String>,
    pub api_key_env: String,
    pub max_retries: u32,
    pub connect_timeout_secs: u64,
    pub first_byte_timeout_secs: u64,
    pub total_timeout_secs: u64,
    pub forward_headers: Vec<String>,
    /// Headers sent on every upstream request whatever the client sent (the provider
    /// organization or project the gateway's key bills to).
    pub headers: BTreeMap<String, String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        let timeouts = Timeouts::default();
        UpstreamConfig {
            url: None,
            api_key_env: "TOLLGATE_UPSTREAM_KEY".into(),
            max_retries: RetryPolicy::default().max_retries(),
            connect_timeout_secs: timeouts.connect().as_secs(),
            first_byte_timeout_secs: timeouts.first_byte().as_secs(),
            total_timeout_secs: timeouts.total().as_secs(),
            forward_headers: Vec::new(),
            headers: BTreeMap::new(),
        }
    }
}

impl UpstreamConfig {
    /// The upstream client for `url`, sending `api_key` (the provider's) when there is one.
    pub fn client(
        &self,
        url: &str,
        api_key: Option<&str>,
        body_limit: BodyLimit,
    ) -> Result<Upstream, String> {
        let timeouts = Timeouts::default()
            .with_connect(Duration::from_secs(self.connect_timeout_secs))
            .with_first_byte(Duration::from_secs(self.first_byte_timeout_secs))
            .with_total(Duration::from_secs(self.total_timeout_secs));
        let mut builder = Upstream::builder(url)
            .map_err(|error| format!("upstream url {url:?}: {error}"))?
            .retry(RetryPolicy::default().with_max_retries(self.max_retries))
            .timeouts(timeouts)
            .body_limit(body_limit);
        if let Some(key) = api_key {
            builder = builder
                .api_key(key)
                .map_err(|error| format!("upstream api key: {error}"))?;
        }
        for name in &self.forward_headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|error| format!("upstream.forward_headers {name:?}: {error}"))?;
            builder = builder
                .forward_header(name)
                .map_err(|error| format!("upstream.forward_headers: {error}"))?;
        }
        for (name, value) in &self.headers {
            let invalid =
                |error: &dyn std::fmt::Display| format!("upstream.headers {name:?}: {error}");
            let name = HeaderName::try_from(name.as_str()).map_err(|e| invalid(&e))?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|e| invalid(&e))?;
            builder = builder.header(name, value).map_err(|e| invalid(&e))?;
        }
        Ok(builder.build())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    pub max_body_bytes: usize,
    pub read_timeout_secs: u64,
    pub strict: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        let limit = BodyLimit::default();
        GuardConfig {
            max_body_bytes: limit.max_bytes(),
            read_timeout_secs: limit.read_timeout().map_or(0, |timeout| timeout.as_secs()),
            strict: false,
        }
    }
}

impl GuardConfig {
    /// The body limit every body-reading layer applies (a read timeout of 0 means none).
    pub fn body_limit(&self) -> BodyLimit {
        let limit = BodyLimit::default().with_max_bytes(self.max_body_bytes);
        match self.read_timeout_secs {
            0 => limit.without_read_timeout(),
            secs => limit.with_read_timeout(Duration::from_secs(secs)),
        }
    }
}

/// Default quotas per key (a key's own override them) and per model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub model_requests_per_minute: Option<u64>,
}

impl LimitsConfig {
    /// The rate-limit layer on `backend`, with OpenAI's `x-ratelimit-*` headers too.
    pub fn layer<B: RateLimitBackend>(&self, backend: B) -> Result<RateLimitLayer<B>, String> {
        let per_minute = |amount: Option<u64>, field: &str| {
            amount
                .map(|amount| Rate::per_minute(amount).map_err(|e| format!("limits.{field}: {e}")))
                .transpose()
        };
        let per_key = Limits {
            requests: per_minute(self.requests_per_minute, "requests_per_minute")?,
            tokens: per_minute(self.tokens_per_minute, "tokens_per_minute")?,
        };
        let per_model = Limits {
            requests: per_minute(self.model_requests_per_minute, "model_requests_per_minute")?,
            tokens: None,
        };
        Ok(RateLimitLayer::with_backend(backend)
            .per_key(per_key)
            .per_model(per_model)
            .openai_headers(true))
    }
}

/// Default deny: what passes besides the metered endpoints and the model listing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// Extra upstream routes, each `"METHOD /path"`, passed through unmetered.
    pub passthrough: Vec<String>,
}

impl RoutesConfig {
    /// The routes layer.
    pub fn layer(&self) -> Result<KnownRoutesLayer, String> {
        self.passthrough
            .iter()
            .try_fold(KnownRoutesLayer::new(), |layer, route| {
                let invalid = || format!("routes.passthrough: {route:?} is not \"METHOD /path\"");
                let (method, path) = route.split_once(' ').ok_or_else(invalid)?;
                let method = Method::from_bytes(method.as_bytes()).map_err(|_| invalid())?;
                if !path.starts_with('/') {
                    return Err(invalid());
                }
                Ok(layer.passthrough(method, path))
            })
    }
}

/// A prepaid account and its opening balance, in micro-units.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: String,
    pub balance: u64,
}

/// `[redis]`: where the shared state lives and what each backend does when Redis fails.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// A single Redis, `redis://host:port`.
    pub url: Option<String>,
    /// Or a Redis Cluster: some of its nodes.
    pub cluster: Option<Vec<String>>,
    /// How long one call may take before it counts as failed.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// The first part of every key.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default)]
    pub limits_on_failure: FailureMode,
    #[serde(default)]
    pub balance_on_failure: FailureMode,
    #[serde(default)]
    pub keys_on_failure: FailureMode,
    /// How long a reservation holds money before it flows back by itself (a crashed
    /// replica's); by default the upstream's total timeout plus a minute.
    pub reservation_ttl_secs: Option<u64>,
    /// How long a replica trusts a looked-up key (changes reach every replica at once by
    /// pub/sub; this bounds a lost message).
    #[serde(default = "default_key_cache_ttl_ms")]
    pub key_cache_ttl_ms: u64,
}

fn default_redis_timeout_ms() -> u64 {
    tollgate_redis::DEFAULT_TIMEOUT.as_millis() as u64
}

fn default_key_prefix() -> String {
    "tollgate".into()
}

fn default_key_cache_ttl_ms() -> u64 {
    tollgate_redis::DEFAULT_CACHE_TTL.as_millis() as u64
}

/// `"closed"` (refuse with a retryable 503) or `"open"` (admit unchecked, counted).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    #[default]
    Closed,
    Open,
}

impl From<FailureMode> for OnFailure {
    fn from(mode: FailureMode) -> OnFailure {
        match mode {
            FailureMode::Closed => OnFailure::Closed,
            FailureMode::Open => OnFailure::Open,
        }
    }
}

impl RedisSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn key_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.key_cache_ttl_ms)
    }

    /// The reservation time to live; `upstream` gives the default.
    pub fn reservation_ttl(&self, upstream: &UpstreamConfig) -> Duration {
        let secs = self
            .reservation_ttl_secs
            .unwrap_or(upstream.total_timeout_secs + 60);
        Duration::from_secs(secs.max(1))
    }
}

/// `[admin]`: where the admin API listens and the keys it accepts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub listen: String,
    pub keys: Vec<AdminKeyEntry>,
}

/// One admin key: `key` (plaintext) or `sha256` (its digest), and the id calls are logged as.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminKeyEntry {
    pub id: String,
    pub key: Option<String>,
    pub sha256: Option<String>,
}

impl AdminKeyEntry {
    /// The key's digest.
    pub fn digest(&self) -> Result<tollgate::auth::KeyDigest, String> {
        match (&self.key, &self.sha256) {
            (Some(key), None) => Ok(tollgate::auth::KeyDigest::of(key)),
            (None, Some(hex)) => tollgate::auth::KeyDigest::from_hex(hex)
                .ok_or_else(|| format!("admin key {}: sha256 is not 64 hex digits", self.id)),
            _ => Err(format!(
                "admin key {}: set exactly one of `key` and `sha256`",
                self.id
            )),
        }
    }
}

/// `[metrics]`: whether requests are measured, and what the Prometheus scrape (`/metrics` on
/// the admin listener) labels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// The metrics layer in the stack (on by default); off, `/metrics` shows only the usage
    /// sink's counters and no `traceparent` goes upstream.
    pub enabled: bool,
    /// A series per API key (and the rate-limit headroom gauge): mind the cardinality.
    pub key_labels: bool,
    /// A series per account (and the unreserved-balance gauge).
    pub account_labels: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            enabled: true,
            key_labels: false,
            account_labels: false,
        }
    }
}

/// `[usage]`: one JSON line per finished request in `dir`, rotated by size and age, written by
/// a thread of its own behind a bounded queue (a full queue drops and counts, it never slows
/// a request).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSettings {
    pub dir: String,
    #[serde(default = "default_max_mb")]
    pub max_mb: u64,
    /// 0: rotate by size only.
    #[serde(default = "default_rotate_every_secs")]
    pub rotate_every_secs: u64,
    /// `interval` (every `fsync_interval_ms`), `every_record` or `never` (the OS decides).
    #[serde(default = "default_fsync")]
    pub fsync: String,
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_max_mb() -> u64 {
    64
}

fn default_rotate_every_secs() -> u64 {
    3600
}

fn default_fsync() -> String {
    "interval".into()
}

fn default_fsync_interval_ms() -> u64 {
    1000
}

fn default_queue() -> usize {
    8192
}

impl UsageSettings {
    /// Opens the file sink (its writer thread starts now).
    pub fn sink(
        &self,
    ) -> Result<tollgate::balance::NonBlockingUsageSink<tollgate::balance::JsonLinesFile>, String>
    {
        use tollgate::balance::{Fsync, JsonLinesFile};
        let fsync = match self.fsync.as_str() {
            "interval" => Fsync::Interval(Duration::from_millis(self.fsync_interval_ms.max(1))),
            "every_record" => Fsync::EveryRecord,
            "never" => Fsync::Never,
            other => {
                return Err(format!(
                    "[usage] fsync = {other:?}: use interval, every_record or never"
                ));
            }
        };
        let rotate_every =
            (self.rotate_every_secs > 0).then(|| Duration::from_secs(self.rotate_every_secs));
        let file = JsonLinesFile::builder(&self.dir)
            .max_bytes(self.max_mb.max(1) * 1024 * 1024)
            .rotate_every(rotate_every)
            .fsync(fsync)
            .open()
            .map_err(|error| format!("[usage] {}: {error}", self.dir))?;
        Ok(file.non_blocking(self.queue.max(1)))
    }
}
