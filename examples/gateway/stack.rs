//! The demo gateway's configuration and its stack of tollgate layers, shared by
//! `examples/gateway/main.rs` and the end-to-end tests.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use serde::Deserialize;
use tollgate::auth::{BearerAuthLayer, InMemoryKeyStore, KeyDigest};
use tollgate::balance::{BalanceGateLayer, InMemoryLedger, Ledger, TracingUsageSink};
use tollgate::core::{Body, BodyLimit, GatewayError, Principal, Rate, X_MODEL};
use tollgate::error::{ErrorEnvelopeLayer, panic_response};
use tollgate::guard::RequestGuardLayer;
use tollgate::models::{CatalogFile, ListModels, ModelCatalog, ModelResolutionLayer};
use tollgate::ratelimit::{Limits, RateLimitLayer};
use tollgate::sse::SsePassthroughLayer;
use tollgate::upstream::{RetryPolicy, Timeouts, Upstream};
use tower::steer::Steer;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The embedded default configuration (also the commented sample).
pub const DEFAULT_CONFIG: &str = include_str!("gateway.toml");

/// The gateway service: `Request<Body>` in, `Response<Body>` out, never an error.
pub type Gateway = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// The gateway configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub guard: GuardConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    pub catalog: CatalogFile,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
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
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: None,
            api_key_env: "TOLLGATE_UPSTREAM_KEY".into(),
            max_retries: 3,
            connect_timeout_secs: 10,
            first_byte_timeout_secs: 60,
            total_timeout_secs: 120,
        }
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
        GuardConfig {
            max_body_bytes: tollgate::core::DEFAULT_BODY_LIMIT,
            read_timeout_secs: 30,
            strict: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub model_requests_per_minute: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub key: Option<String>,
    pub sha256: Option<String>,
    pub id: String,
    pub account: String,
    pub models: Option<Vec<String>>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: String,
    pub balance: u64,
}

impl Config {
    /// Parses a configuration file.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|error| format!("invalid gateway configuration: {error}"))
    }
}

/// What the running gateway shares with whoever started it.
pub struct Handles {
    pub ledger: Arc<InMemoryLedger>,
    pub keys: InMemoryKeyStore,
    pub catalog: ModelCatalog,
}

/// Builds the stack, outermost first: error envelope → request id → trace (one log line per
/// request) → catch panic → bearer auth → (`GET /v1/models` → list) model catalog → request
/// guard → rate limit → SSE passthrough → balance gate → upstream.
pub async fn build(
    config: &Config,
    upstream_url: &str,
    upstream_key: Option<&str>,
) -> Result<(Gateway, Handles), String> {
    let catalog =
        ModelCatalog::from_file(config.catalog.clone()).map_err(|error| error.to_string())?;

    let keys = InMemoryKeyStore::new();
    for key in &config.keys {
        let digest = match (&key.key, &key.sha256) {
            (Some(plain), None) => KeyDigest::of(plain),
            (None, Some(hex)) => KeyDigest::from_hex(hex)
                .ok_or_else(|| format!("key {}: sha256 is not 64 hex digits", key.id))?,
            _ => {
                return Err(format!(
                    "key {}: set exactly one of `key` and `sha256`",
                    key.id
                ));
            }
        };
        let mut principal = Principal::new(key.id.as_str(), key.account.as_str());
        if let Some(models) = &key.models {
            principal = principal.with_allowed_models(models.iter().map(String::as_str));
        }
        if let Some(rpm) = key.requests_per_minute {
            principal = principal.with_request_quota(rate(rpm, &key.id)?);
        }
        if let Some(tpm) = key.tokens_per_minute {
            principal = principal.with_token_quota(rate(tpm, &key.id)?);
        }
        keys.insert_digest(digest, principal);
    }

    let ledger = Arc::new(InMemoryLedger::new());
    for account in &config.accounts {
        ledger
            .top_up(&account.id, account.balance)
            .await
            .map_err(|error| error.to_string())?;
    }

    let limits = &config.limits;
    let rate_limits = RateLimitLayer::new()
        .per_key(Limits {
            requests: limits
                .requests_per_minute
                .map(|n| rate(n, "limits"))
                .transpose()?,
            tokens: limits
                .tokens_per_minute
                .map(|n| rate(n, "limits"))
                .transpose()?,
        })
        .per_model(Limits {
            requests: limits
                .model_requests_per_minute
                .map(|n| rate(n, "limits"))
                .transpose()?,
            tokens: None,
        })
        .openai_headers(true);

    let body_limit = BodyLimit::default()
        .with_max_bytes(config.guard.max_body_bytes)
        .with_read_timeout(Duration::from_secs(config.guard.read_timeout_secs));

    let upstream = &config.upstream;
    let mut builder = Upstream::builder(upstream_url)
        .map_err(|error| format!("upstream url {upstream_url:?}: {error}"))?
        .retry(RetryPolicy::default().with_max_retries(upstream.max_retries))
        .timeouts(
            Timeouts::default()
                .with_connect(Duration::from_secs(upstream.connect_timeout_secs))
                .with_first_byte(Duration::from_secs(upstream.first_byte_timeout_secs))
                .with_total(Duration::from_secs(upstream.total_timeout_secs)),
        )
        .body_limit(body_limit);
    if let Some(key) = upstream_key {
        builder = builder
            .api_key(key)
            .map_err(|error| format!("upstream api key: {error}"))?;
    }

    let chat = ServiceBuilder::new()
        .layer(ModelResolutionLayer::new(catalog.clone()).body_limit(body_limit))
        .layer(
            RequestGuardLayer::new()
                .body_limit(body_limit)
                .strict(config.guard.strict),
        )
        .layer(rate_limits)
        .layer(SsePassthroughLayer::new().inject_usage(true))
        .layer(
            BalanceGateLayer::with_shared_ledger(ledger.clone())
                .balance_header(true)
                .usage_sink(TracingUsageSink),
        )
        .service(builder.build());
    let chat = ServiceExt::<Request<Body>>::map_response(chat, |response| response.map(Body::new));
    let list =
        ServiceExt::<Request<Body>>::map_response(ListModels::new(catalog.clone()), |response| {
            response.map(Body::new)
        });
    let router = Steer::new(
        vec![BoxCloneService::new(list), BoxCloneService::new(chat)],
        |request: &Request<Body>, _: &[_]| {
            let models =
                request.method() == Method::GET && request.uri().path().starts_with("/v1/models");
            if models { 0 } else { 1 }
        },
    );

    let gateway = outer(router, keys.clone());
    Ok((
        gateway,
        Handles {
            ledger,
            keys,
            catalog,
        },
    ))
}

/// A per-minute quota from the configuration; zero is refused, naming where it was set.
fn rate(per_minute: u64, owner: &str) -> Result<Rate, String> {
    Rate::per_minute(per_minute).map_err(|error| format!("{owner}: {error}"))
}

/// The layers every request passes before routing: error envelope → request id → trace (one
/// log line per request: request id, key id, model, status, latency, error type) → catch panic
/// → bearer auth.
pub fn outer<S, B>(inner: S, keys: InMemoryKeyStore) -> Gateway
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tollgate::core::BoxError>,
{
    let gateway = ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(ErrorEnvelopeLayer::new())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %request_id,
                        key_id = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|response: &Response<_>, latency: Duration, span: &Span| {
                    let model = response.headers().get(X_MODEL).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    let error = response.extensions().get::<GatewayError>().map_or("-", |e| e.kind.type_str());
                    tracing::info!(parent: span, status = response.status().as_u16(), latency_ms = latency.as_millis() as u64, model, error, "served");
                })
                .on_failure(()),
        )
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(BearerAuthLayer::new(keys).required_prefix("sk-llmaai-"))
        .service(inner);
    BoxCloneService::new(gateway)
}
