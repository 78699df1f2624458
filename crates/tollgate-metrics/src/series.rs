//! The metric names, their label sets, and the handles registered for each label set.
//!
//! A handle is registered with the recorder once per label set and kept here: after the first
//! request of a kind, recording is an atomic operation on a handle, with no key built, hashed
//! or looked up in the recorder's registry.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder, SharedString, Unit};
use tollgate_core::Endpoint;

/// The metric names: OpenTelemetry's GenAI semantic conventions where one exists, `tollgate.*`
/// where none does. A Prometheus exporter writes the dots as underscores (and adds `_total`
/// to counters).
pub mod names {
    /// Histogram, seconds: from the request to the end of its response body (or to the
    /// client going away).
    pub const REQUEST_DURATION: &str = "gen_ai.server.request.duration";
    /// Histogram, seconds: from the request to the first chunk of a streamed response.
    pub const TIME_TO_FIRST_TOKEN: &str = "gen_ai.server.time_to_first_token";
    /// Histogram, seconds: of a streamed response, the time after the first chunk divided by
    /// the output tokens after the first.
    pub const TIME_PER_OUTPUT_TOKEN: &str = "gen_ai.server.time_per_output_token";
    /// Histogram, tokens per request, by `gen_ai.token.type` (`input`, `output`).
    pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Counter, tokens: of the input tokens, those the provider read from its prompt cache.
    pub const CACHED_TOKENS: &str = "tollgate.tokens.cached";
    /// Counter, tokens: of the output tokens, those spent reasoning.
    pub const REASONING_TOKENS: &str = "tollgate.tokens.reasoning";
    /// Counter, micro-units of the catalog's currency: what requests cost at the serving
    /// model's prices.
    pub const COST: &str = "tollgate.cost";
    /// Counter: finished requests, by outcome (`http.response.status_code`, `error.type`).
    pub const REQUESTS: &str = "tollgate.requests";
    /// Histogram, seconds: from the request to its response head.
    pub const TIME_TO_HEAD: &str = "tollgate.server.time_to_response_head";
    /// Histogram, seconds: the gateway's own share of the time to the response head, the
    /// time not spent waiting on the provider (or its back-off).
    pub const OVERHEAD: &str = "tollgate.server.overhead";
    /// Counter: requests sent to the provider, retries and fallbacks included.
    pub const UPSTREAM_ATTEMPTS: &str = "tollgate.upstream.attempts";
    /// Counter: retries of the same model.
    pub const UPSTREAM_RETRIES: &str = "tollgate.upstream.retries";
    /// Counter: fallback models tried.
    pub const UPSTREAM_FALLBACKS: &str = "tollgate.upstream.fallbacks";
    /// Gauge: requests in flight, from the request to the end of the response body.
    pub const ACTIVE_REQUESTS: &str = "tollgate.server.active_requests";
    /// Gauge: streamed responses in flight.
    pub const ACTIVE_STREAMS: &str = "tollgate.server.active_streams";
    /// Gauge, requests: what the key's tightest rate limit has left, as of its last request
    /// (only with key labels on).
    pub const RATE_LIMIT_REMAINING: &str = "tollgate.ratelimit.remaining";
    /// Gauge, micro-units: the account's balance not held by reservations, as of its last
    /// admitted request (only with account labels on).
    pub const BALANCE_UNRESERVED: &str = "tollgate.balance.unreserved";
}

/// The attribute names.
pub mod attributes {
    /// `chat`, `text_completion` or `embeddings` (the Responses API is `chat`).
    pub const OPERATION: &str = "gen_ai.operation.name";
    /// The endpoint: `/v1/chat/completions`, `/v1/responses`, `/v1/completions`,
    /// `/v1/embeddings`, `/v1/models`, or `other` for anything else (never the raw path).
    pub const ROUTE: &str = "http.route";
    /// The model asked for, as the catalog names it (empty when the catalog does not know it).
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// The model that answered (a fallback's after a fallback; empty when none did).
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// The response status (empty when the client left before the head).
    pub const STATUS: &str = "http.response.status_code";
    /// The error envelope's `type`, `cancelled` when the client left before the end of the
    /// response, or empty.
    pub const ERROR_TYPE: &str = "error.type";
    /// `input` or `output`.
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    /// The caller's key id (opt-in).
    pub const KEY_ID: &str = "tollgate.key.id";
    /// The account (opt-in).
    pub const ACCOUNT: &str = "tollgate.account.id";
}

/// The route label's values; the index is the route.
const ROUTES: [&str; 6] = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "other",
];

/// A request's endpoint, from a fixed set: a raw path would let clients invent label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Route(u8);

impl Route {
    pub(crate) const COUNT: usize = ROUTES.len();

    pub(crate) fn of(path: &str) -> Route {
        match Endpoint::from_path(path) {
            Some(Endpoint::ChatCompletions) => Route(0),
            Some(Endpoint::Responses) => Route(1),
            Some(Endpoint::Completions) => Route(2),
            Some(Endpoint::Embeddings) => Route(3),
            _ if path == "/v1/models" || path.starts_with("/v1/models/") => Route(4),
            _ => Route(5),
        }
    }

    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }

    pub(crate) fn path(self) -> &'static str {
        ROUTES[self.index()]
    }

    fn operation(self) -> &'static str {
        match self.0 {
            0 | 1 => "chat",
            2 => "text_completion",
            3 => "embeddings",
            _ => "",
        }
    }
}

/// Where handles are registered: the recorder the layer was given, else the global one.
#[derive(Clone, Default)]
pub(crate) struct Registrar(Option<Arc<dyn Recorder + Send + Sync>>);

impl Registrar {
    pub(crate) fn new(recorder: Option<Arc<dyn Recorder + Send + Sync>>) -> Self {
        Registrar(recorder)
    }

    fn with<T>(&self, f: impl FnOnce(&dyn Recorder) -> T) -> T {
        match &self.0 {
            Some(recorder) => f(recorder.as_ref()),
            None => metrics::with_recorder(f),
        }
    }

    fn counter(&self, name: &'static str, labels: &[Label]) -> Counter {
        let key = Key::from_parts(name, labels.to_vec());
        self.with(|recorder| recorder.register_counter(&key, &METADATA))
    }

    fn histogram(&self, name: &'static str, labels: &[Label]) -> Histogram {
        let key = Key::from_parts(name, labels.to_vec());
        self.with(|recorder| recorder.register_histogram(&key, &METADATA))
    }

    fn gauge(&self, name: &'static str, labels: &[Label]) -> Gauge {
        let key = Key::from_parts(name, labels.to_vec());
        self.with(|recorder| recorder.register_gauge(&key, &METADATA))
    }

    /// Units and help text, for exporters that show them.
    pub(crate) fn describe(&self) {
        use names::*;
        let seconds = Some(Unit::Seconds);
        let histograms = [
            (
                REQUEST_DURATION,
                seconds,
                "GenAI request duration, to the end of the response",
            ),
            (
                TIME_TO_FIRST_TOKEN,
                seconds,
                "Time to the first chunk of a streamed response",
            ),
            (
                TIME_PER_OUTPUT_TOKEN,
                seconds,
                "Time per output token after the first, streams",
            ),
            (
                TOKEN_USAGE,
                Some(Unit::Count),
                "Tokens per request, by gen_ai.token.type",
            ),
            (TIME_TO_HEAD, seconds, "Time to the response head"),
            (
                OVERHEAD,
                seconds,
                "Time to the response head not spent waiting on the provider",
            ),
        ];
        let counters = [
            (
                CACHED_TOKENS,
                "Input tokens read from the provider's prompt cache",
            ),
            (REASONING_TOKENS, "Output tokens spent reasoning"),
            (COST, "Cost at the serving model's prices, in micro-units"),
            (REQUESTS, "Finished requests, by status and error type"),
            (UPSTREAM_ATTEMPTS, "Requests sent to the provider"),
            (UPSTREAM_RETRIES, "Retries of the same model"),
            (UPSTREAM_FALLBACKS, "Fallback models tried"),
        ];
        let gauges = [
            (ACTIVE_REQUESTS, "Requests in flight"),
            (ACTIVE_STREAMS, "Streamed responses in flight"),
            (
                RATE_LIMIT_REMAINING,
                "Requests the key's tightest rate limit has left",
            ),
            (
                BALANCE_UNRESERVED,
                "The account's unreserved balance, in micro-units",
            ),
        ];
        self.with(|recorder| {
            for (name, unit, help) in histograms {
                recorder.describe_histogram(name.into(), unit, help.into());
            }
            for (name, help) in counters {
                recorder.describe_counter(name.into(), None, help.into());
            }
            for (name, help) in gauges {
                recorder.describe_gauge(name.into(), None, help.into());
            }
        });
    }
}

static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// What distinguishes the outcomes of one model pair. The error type is one of a few static
/// strings, compared and hashed by address: the same text at two addresses makes two entries
/// for the same series, which the recorder shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutcomeKey {
    pub(crate) status: Option<u16>,
    pub(crate) error: &'static str,
}

impl PartialEq for OutcomeKey {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && std::ptr::eq(self.error, other.error)
    }
}

impl Eq for OutcomeKey {}

impl OutcomeKey {
    fn digest(&self) -> u64 {
        let status = self.status.map_or(1 << 16, u64::from);
        (status << 48) ^ self.error.as_ptr() as u64
    }
}

/// What distinguishes the series of one route, model pair and (opt-in) caller.
#[derive(Clone, Debug, Eq)]
pub(crate) struct ModelKey {
    pub(crate) route: Route,
    pub(crate) requested: Option<Arc<str>>,
    pub(crate) served: Option<Arc<str>>,
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) account: Option<Arc<str>>,
}

// Looked up on every request: names are compared by address first (they come from the
// catalog and the key store), and hashed by a digest (`ModelKey::digest`).
impl PartialEq for ModelKey {
    fn eq(&self, other: &Self) -> bool {
        fn same(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (a, b) => a.is_none() && b.is_none(),
            }
        }
        self.route == other.route
            && same(&self.requested, &other.requested)
            && same(&self.served, &other.served)
            && same(&self.key_id, &other.key_id)
            && same(&self.account, &other.account)
    }
}

impl Hash for ModelKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest());
    }
}

impl ModelKey {
    /// The route and, of each name, its length and its first and last eight bytes, folded
    /// into one word for the map's hasher: enough to tell model and caller names apart (a
    /// collision costs a comparison, never a wrong series), for a fraction of hashing them.
    fn digest(&self) -> u64 {
        let names = [&self.requested, &self.served, &self.key_id, &self.account];
        names.iter().fold(u64::from(self.route.0), |digest, name| {
            digest.rotate_left(16) ^ name.as_deref().map_or(0, name_digest)
        })
    }

    fn labels(&self) -> Vec<Label> {
        let text = |value: &Option<Arc<str>>| -> SharedString {
            value
                .clone()
                .map_or(SharedString::const_str(""), Into::into)
        };
        let mut labels = vec![
            Label::from_static_parts(attributes::OPERATION, self.route.operation()),
            Label::from_static_parts(attributes::ROUTE, self.route.path()),
            Label::new(attributes::REQUEST_MODEL, text(&self.requested)),
            Label::new(attributes::RESPONSE_MODEL, text(&self.served)),
        ];
        if let Some(key_id) = &self.key_id {
            labels.push(Label::new(
                attributes::KEY_ID,
                SharedString::from(key_id.clone()),
            ));
        }
        if let Some(account) = &self.account {
            labels.push(Label::new(
                attributes::ACCOUNT,
                SharedString::from(account.clone()),
            ));
        }
        labels
    }
}

/// What one finished request records into: its model pair's series and its outcome's, found
/// by one lookup.
pub(crate) struct Finished {
    pub(crate) model: Arc<ModelSeries>,
    pub(crate) outcome: OutcomeSeries,
}

/// The key of [`Finished`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct FinishedKey {
    models: ModelKey,
    outcome: OutcomeKey,
}

impl Hash for FinishedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.models.digest() ^ self.outcome.digest().rotate_left(8));
    }
}

/// A name's length and its first and last eight bytes (all of it when shorter), mixed.
fn name_digest(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let word = |eight: &[u8]| -> u64 {
        match <[u8; 8]>::try_from(eight) {
            Ok(word) => u64::from_le_bytes(word),
            Err(_) => eight
                .iter()
                .fold(0, |word, &byte| (word << 8) | u64::from(byte)),
        }
    };
    let (first, last) = match bytes.len() {
        0..8 => (word(bytes), 0),
        len => (word(&bytes[..8]), word(&bytes[len - 8..])),
    };
    // The length counts from one, so that an empty name is told from none.
    first.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ last.rotate_left(32) ^ (bytes.len() as u64 + 1)
}

/// The series of one outcome: registered together, on its first request.
pub(crate) struct OutcomeSeries {
    pub(crate) requests: Counter,
    pub(crate) duration: Histogram,
    pub(crate) time_to_head: Histogram,
}

impl OutcomeSeries {
    fn register(registrar: &Registrar, models: &[Label], key: OutcomeKey) -> Self {
        let mut labels = models.to_vec();
        let status = key.status.map_or(SharedString::const_str(""), |status| {
            status.to_string().into()
        });
        labels.push(Label::new(attributes::STATUS, status));
        labels.push(Label::from_static_parts(attributes::ERROR_TYPE, key.error));
        OutcomeSeries {
            requests: registrar.counter(names::REQUESTS, &labels),
            duration: registrar.histogram(names::REQUEST_DURATION, &labels),
            time_to_head: registrar.histogram(names::TIME_TO_HEAD, &labels),
        }
    }
}

/// The series of a model pair, each registered on its first value: a series that never had
/// one (tokens of a rejected request, retries of a model that never needed one) is never shown.
pub(crate) struct ModelSeries {
    labels: Vec<Label>,
    input_tokens: OnceLock<Histogram>,
    output_tokens: OnceLock<Histogram>,
    cached_tokens: OnceLock<Counter>,
    reasoning_tokens: OnceLock<Counter>,
    cost: OnceLock<Counter>,
    time_to_first_token: OnceLock<Histogram>,
    time_per_output_token: OnceLock<Histogram>,
    attempts: OnceLock<Counter>,
    retries: OnceLock<Counter>,
    fallbacks: OnceLock<Counter>,
}

impl ModelSeries {
    fn new(key: &ModelKey) -> Self {
        ModelSeries {
            labels: key.labels(),
            input_tokens: OnceLock::new(),
            output_tokens: OnceLock::new(),
            cached_tokens: OnceLock::new(),
            reasoning_tokens: OnceLock::new(),
            cost: OnceLock::new(),
            time_to_first_token: OnceLock::new(),
            time_per_output_token: OnceLock::new(),
            attempts: OnceLock::new(),
            retries: OnceLock::new(),
            fallbacks: OnceLock::new(),
        }
    }

    fn token_usage(&self, registrar: &Registrar, token_type: &'static str) -> Histogram {
        let mut labels = self.labels.clone();
        labels.push(Label::from_static_parts(attributes::TOKEN_TYPE, token_type));
        registrar.histogram(names::TOKEN_USAGE, &labels)
    }

    pub(crate) fn input_tokens(&self, registrar: &Registrar) -> &Histogram {
        self.input_tokens
            .get_or_init(|| self.token_usage(registrar, "input"))
    }

    pub(crate) fn output_tokens(&self, registrar: &Registrar) -> &Histogram {
        self.output_tokens
            .get_or_init(|| self.token_usage(registrar, "output"))
    }

    pub(crate) fn cached_tokens(&self, registrar: &Registrar) -> &Counter {
        self.cached_tokens
            .get_or_init(|| registrar.counter(names::CACHED_TOKENS, &self.labels))
    }

    pub(crate) fn reasoning_tokens(&self, registrar: &Registrar) -> &Counter {
        self.reasoning_tokens
            .get_or_init(|| registrar.counter(names::REASONING_TOKENS, &self.labels))
    }

    pub(crate) fn cost(&self, registrar: &Registrar) -> &Counter {
        self.cost
            .get_or_init(|| registrar.counter(names::COST, &self.labels))
    }

    pub(crate) fn time_to_first_token(&self, registrar: &Registrar) -> &Histogram {
        self.time_to_first_token
            .get_or_init(|| registrar.histogram(names::TIME_TO_FIRST_TOKEN, &self.labels))
    }

    pub(crate) fn time_per_output_token(&self, registrar: &Registrar) -> &Histogram {
        self.time_per_output_token
            .get_or_init(|| registrar.histogram(names::TIME_PER_OUTPUT_TOKEN, &self.labels))
    }

    pub(crate) fn attempts(&self, registrar: &Registrar) -> &Counter {
        self.attempts
            .get_or_init(|| registrar.counter(names::UPSTREAM_ATTEMPTS, &self.labels))
    }

    pub(crate) fn retries(&self, registrar: &Registrar) -> &Counter {
        self.retries
            .get_or_init(|| registrar.counter(names::UPSTREAM_RETRIES, &self.labels))
    }

    pub(crate) fn fallbacks(&self, registrar: &Registrar) -> &Counter {
        self.fallbacks
            .get_or_init(|| registrar.counter(names::UPSTREAM_FALLBACKS, &self.labels))
    }
}

/// The series of one route: the gauges of what is in flight and the overhead.
pub(crate) struct RouteSeries {
    pub(crate) active_requests: Gauge,
    pub(crate) active_streams: Gauge,
    pub(crate) overhead: Histogram,
}

/// Handles by label set: read on every request, written once per new label set, so a read
/// lock (one uncontended atomic) in front of a plain map.
struct Map<K, V>(RwLock<HashMap<K, Arc<V>, foldhash::fast::RandomState>>);

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Map(RwLock::default())
    }
}

impl<K: Eq + Hash, V> Map<K, V> {
    /// The handles of `key`, made by `make` the first time.
    fn get_or_make(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V>
    where
        K: Clone,
    {
        if let Some(found) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return found.clone();
        }
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }
}

/// Every handle the layer registered, shared by its clones.
pub(crate) struct Series {
    pub(crate) registrar: Registrar,
    described: OnceLock<()>,
    routes: [OnceLock<RouteSeries>; Route::COUNT],
    models: Map<ModelKey, ModelSeries>,
    finished: RwLock<HashMap<FinishedKey, Finished, foldhash::fast::RandomState>>,
    rate_limit_remaining: Map<Arc<str>, Gauge>,
    balance_unreserved: Map<Arc<str>, Gauge>,
}

impl Series {
    pub(crate) fn new(registrar: Registrar) -> Self {
        Series {
            registrar,
            described: OnceLock::new(),
            routes: std::array::from_fn(|_| OnceLock::new()),
            models: Map::default(),
            finished: RwLock::default(),
            rate_limit_remaining: Map::default(),
            balance_unreserved: Map::default(),
        }
    }

    pub(crate) fn route(&self, route: Route) -> &RouteSeries {
        self.routes[route.index()].get_or_init(|| {
            // The first request of the process: the recorder is installed by now.
            self.described.get_or_init(|| self.registrar.describe());
            let labels = [
                Label::from_static_parts(attributes::OPERATION, route.operation()),
                Label::from_static_parts(attributes::ROUTE, route.path()),
            ];
            RouteSeries {
                active_requests: self.registrar.gauge(names::ACTIVE_REQUESTS, &labels),
                active_streams: self.registrar.gauge(names::ACTIVE_STREAMS, &labels),
                overhead: self.registrar.histogram(names::OVERHEAD, &labels),
            }
        })
    }

    /// Runs `record` with the series of a request of the model pair `models` that finished
    /// with `outcome`, registering them on the first such request. One read-locked lookup, and
    /// no handle cloned: this runs on every request.
    pub(crate) fn finished<R>(
        &self,
        models: ModelKey,
        outcome: OutcomeKey,
        record: impl FnOnce(&Finished) -> R,
    ) -> R {
        let key = FinishedKey { models, outcome };
        if let Some(found) = self
            .finished
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return record(found);
        }
        let model = self
            .models
            .get_or_make(&key.models, || ModelSeries::new(&key.models));
        let mut finished = self
            .finished
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let found = finished.entry(key).or_insert_with_key(|key| Finished {
            outcome: OutcomeSeries::register(&self.registrar, &model.labels, key.outcome),
            model,
        });
        record(found)
    }

    pub(crate) fn rate_limit_remaining(&self, key_id: &Arc<str>) -> Gauge {
        self.per_caller(
            &self.rate_limit_remaining,
            names::RATE_LIMIT_REMAINING,
            attributes::KEY_ID,
            key_id,
        )
    }

    pub(crate) fn balance_unreserved(&self, account: &Arc<str>) -> Gauge {
        self.per_caller(
            &self.balance_unreserved,
            names::BALANCE_UNRESERVED,
            attributes::ACCOUNT,
            account,
        )
    }

    fn per_caller(
        &self,
        map: &Map<Arc<str>, Gauge>,
        name: &'static str,
        attribute: &'static str,
        who: &Arc<str>,
    ) -> Gauge {
        let gauge = map.get_or_make(who, || {
            let labels = [Label::new(attribute, SharedString::from(who.clone()))];
            self.registrar.gauge(name, &labels)
        });
        Gauge::clone(&gauge)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn key(requested: &str, served: Option<&str>, key_id: Option<&str>) -> ModelKey {
        ModelKey {
            route: Route(0),
            requested: Some(requested.into()),
            served: served.map(Into::into),
            key_id: key_id.map(Into::into),
            account: None,
        }
    }

    #[test]
    fn model_keys_are_told_apart_by_content_not_address() {
        let hasher = foldhash::fast::FixedState::default();
        let a = key("gpt-5.4-mini", Some("gpt-5.4-mini"), None);
        let b = key("gpt-5.4-mini", Some("gpt-5.4-mini"), None);
        assert_eq!(a, b);
        assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b));

        let others = [
            key("gpt-5.4-nano", Some("gpt-5.4-mini"), None),
            key("gpt-5.4-mini", Some("gpt-5.4-nano"), None),
            key("gpt-5.4-mini", None, None),
            key("gpt-5.4-mini", Some("gpt-5.4-mini"), Some("key_1")),
            key("gpt-5.4-mini", Some("gpt-5.4-mini"), Some("")),
            key("gpt", Some("gpt-5.4-mini"), None),
            ModelKey {
                route: Route(1),
                ..a.clone()
            },
        ];
        for other in &others {
            assert_ne!(&a, other);
            assert_ne!(hasher.hash_one(&a), hasher.hash_one(other), "{other:?}");
        }
    }
}
