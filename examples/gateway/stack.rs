//! The demo gateway's stack of tollgate layers, shared by `examples/gateway/main.rs` and the
//! end-to-end tests. It reads top to bottom in the README's recommended order.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use std::sync::Arc;

use futures_util::FutureExt;
use tollgate::auth::BearerAuthLayer;
use tollgate::auth::InMemoryKeyStore;
use tollgate::balance::{BalanceGateLayer, JsonLinesFile, NonBlockingUsageSink, TracingUsageSink};
use tollgate::core::extensions::reserve_extensions;
use tollgate::core::request_id::strip_unsafe_request_id;
use tollgate::core::{Body, BoxError};
use tollgate::error::{ErrorEnvelopeLayer, panic_response};
use tollgate::guard::RequestGuardLayer;
use tollgate::metrics::{Metrics as Measure, MetricsBody, MetricsLayer, Scrape, TextRecorder};
use tollgate::models::{ListModels, LiveCatalog, ModelCatalog, ModelResolutionLayer};
use tollgate::ratelimit::RateLimitLayer;
use tollgate::sse::SsePassthroughLayer;
use tollgate_admin::AdminService;
use tower::Layer;
use tower::layer::layer_fn;
use tower::steer::Steer;
use tower::util::{BoxCloneService, MapResponse};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::backends::{Backends, Balances, Keys, Limits};
use crate::config::Config;

/// The gateway service: `Request<Body>` in, `Response<Body>` out, never an error.
pub type Gateway = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// What the running gateway shares with whoever started it: its state, what a reload
/// replaces, and what it measures.
pub struct Handles {
    pub ledger: Balances,
    pub keys: Keys,
    pub catalog: LiveCatalog,
    limits: RateLimitLayer<Limits>,
    pub metrics: Metrics,
}

/// The gateway's metrics: its own recorder (so that several gateways in one process, as in the
/// tests, each have theirs; tollgate's `TextRecorder`, whose fixed-bucket histograms cost
/// less per request than the Prometheus exporter's), and the usage file sink's counters.
#[derive(Clone)]
pub struct Metrics {
    scrape: Scrape,
    pub usage: Option<NonBlockingUsageSink<JsonLinesFile>>,
    usage_dropped: metrics::Counter,
}

impl Metrics {
    fn new(config: &Config) -> Result<(Metrics, MetricsLayer), String> {
        use metrics::Recorder;
        let recorder = TextRecorder::new();
        let scrape = Scrape::text(&recorder);
        let dropped = metrics::Key::from_static_name("tollgate.usage.records.dropped");
        let metadata = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        let usage_dropped = recorder.register_counter(&dropped, &metadata);
        let usage = config
            .usage
            .as_ref()
            .map(|usage| usage.sink())
            .transpose()?;
        let layer = MetricsLayer::new()
            .recorder(recorder)
            .key_labels(config.metrics.key_labels)
            .account_labels(config.metrics.account_labels);
        let metrics = Metrics {
            scrape,
            usage,
            usage_dropped,
        };
        Ok((metrics, layer))
    }

    /// `GET /metrics`: the Prometheus text, with the usage records dropped so far.
    fn scrape(&self) -> Scrape {
        if let Some(usage) = &self.usage {
            self.usage_dropped.absolute(usage.dropped());
        }
        self.scrape.clone()
    }
}

/// What a reload replaced.
#[derive(Debug)]
pub struct Reloaded {
    pub models: usize,
    /// Keys in the file (with Redis, only those new to Redis were added).
    pub keys: usize,
}

impl Handles {
    /// Reads `path` and [`reload`](Handles::reload)s it; a summary, or why nothing changed.
    pub async fn reload_file(&self, path: &str) -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|error| format!("{path}: {error}"))?;
        let config = Config::parse(&text)?;
        let reloaded = self.reload(&config).await?;
        Ok(format!(
            "reloaded {path}: {} models, {} keys",
            reloaded.models, reloaded.keys
        ))
    }

    /// Replaces the catalog, the keys and the limits with `config`'s, all validated first:
    /// a configuration with any error changes nothing and says why. Each swap is atomic, and
    /// requests in flight finish on what they started with. Balances are state, not
    /// configuration: `[[accounts]]` only opens accounts at the first start. The other
    /// sections take effect at the next start.
    pub async fn reload(&self, config: &Config) -> Result<Reloaded, String> {
        let catalog = ModelCatalog::from_file(config.catalog.clone()).map_err(|e| e.to_string())?;
        let keys = InMemoryKeyStore::from_file(&config.auth).map_err(|e| e.to_string())?;
        let backend = self.limits.backend().clone();
        let limits = config.limits.layer(backend)?;
        let reloaded = Reloaded {
            models: catalog.len(),
            keys: keys.len(),
        };
        match &self.keys {
            Keys::Memory(serving) => serving.replace_all(&keys),
            // Redis owns its keys (revocations included): the file only adds new ones.
            Keys::Redis(serving) => {
                for (digest, record) in keys.records() {
                    let added = serving.insert_if_absent(&digest, &record).await;
                    added.map_err(|e| format!("redis: key {}: {e}", record.principal.key_id()))?;
                }
            }
        }
        self.catalog.replace(catalog);
        self.limits.reload(&limits);
        Ok(reloaded)
    }
}

/// The gateway over the OpenAI-compatible API at `upstream_url`.
pub async fn build(
    config: &Config,
    upstream_url: &str,
    upstream_key: Option<&str>,
) -> Result<(Gateway, Handles), String> {
    let body_limit = config.guard.body_limit();
    let upstream = config
        .upstream
        .client(upstream_url, upstream_key, body_limit)?;
    build_over(config, upstream).await
}

/// The gateway over any upstream service (the tests put a panicking one there).
pub async fn build_over<U, B>(config: &Config, upstream: U) -> Result<(Gateway, Handles), String>
where
    U: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send,
    U: Sync + 'static,
    U::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let catalog = ModelCatalog::from_file(config.catalog.clone()).map_err(|e| e.to_string())?;
    let catalog = LiveCatalog::new(catalog);
    let Backends {
        limits,
        ledger,
        caps,
        keys,
    } = Backends::from_config(config).await?;
    let mut auth = BearerAuthLayer::new(keys.clone());
    if let Some(prefix) = &config.auth.required_prefix {
        auth = auth.required_prefix(prefix.as_str());
    }
    let body_limit = config.guard.body_limit();
    let limits_layer = config.limits.layer(limits)?;
    let (metrics, metrics_layer) = Metrics::new(config)?;
    let metrics_layer = config.metrics.enabled.then_some(metrics_layer);
    let balance = BalanceGateLayer::new(ledger.clone())
        .spend_caps(caps)
        .balance_header(true);
    let balance = match &metrics.usage {
        Some(file) => balance.usage_sink(file.clone()),
        None => balance.usage_sink(TracingUsageSink),
    };

    let gateway = ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(ErrorEnvelopeLayer::new())
        .map_request(reserve_extensions)
        .map_request(strip_unsafe_request_id)
        .layer(SetRequestIdLayer::x_request_id(
            tollgate::trace::SeededRequestUuid,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(tollgate::trace::layer())
        .layer(layer_fn(|inner| measured(metrics_layer.as_ref(), inner)))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(auth)
        .layer(config.routes.layer()?)
        .layer(layer_fn(|chat| ModelListOr {
            list: ListModels::new(catalog.clone()),
            chat,
        }))
        .layer(ModelResolutionLayer::new(catalog.clone()).body_limit(body_limit))
        .layer(
            RequestGuardLayer::new()
                .body_limit(body_limit)
                .strict(config.guard.strict),
        )
        // The futures of the layers from here down are most of the request's state: boxed once,
        // the layers above move a pointer instead of copying them into their own futures.
        .map_future(FutureExt::boxed)
        .layer(limits_layer.clone())
        .layer(SsePassthroughLayer::new().inject_usage(true))
        .layer(balance)
        .service(upstream);
    let handles = Handles {
        ledger,
        keys,
        catalog,
        limits: limits_layer,
        metrics,
    };
    Ok((BoxCloneService::new(gateway), handles))
}

/// The stack under the metrics layer, measured, or not with `[metrics] enabled = false`.
type Measured<S, B> = tower::util::Either<
    MapResponse<Measure<S>, fn(Response<MetricsBody<B>>) -> Response<EitherBody<B>>>,
    MapResponse<S, fn(Response<B>) -> Response<EitherBody<B>>>,
>;

/// Both arms of [`Measured`] answer with this body.
type EitherBody<B> = http_body_util::Either<MetricsBody<B>, B>;

fn measured<S, B>(layer: Option<&MetricsLayer>, inner: S) -> Measured<S, B> {
    match layer {
        Some(layer) => tower::util::Either::Left(MapResponse::new(layer.layer(inner), |r| {
            r.map(EitherBody::Left)
        })),
        None => tower::util::Either::Right(MapResponse::new(inner, |r| r.map(EitherBody::Right))),
    }
}

/// The admin listener's service: `GET /metrics` (the Prometheus scrape, unauthenticated like
/// most scrape targets: keep the listener private), everything else to the admin API.
pub type AdminListener = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// The admin listener per `[admin]`: the metrics and the admin API over the gateway's keys and
/// ledger; `reload_from` is the configuration file `POST /admin/reload` re-reads (none: the
/// embedded default, nothing to reload).
pub fn admin_listener(
    handles: &Arc<Handles>,
    config: &Config,
    reload_from: Option<String>,
) -> Result<Option<AdminListener>, String> {
    let Some(admin) = admin(handles, config, reload_from)? else {
        return Ok(None);
    };
    let metrics = handles.metrics.clone();
    let scrape = tower::service_fn(move |request: Request<Body>| {
        let scrape = metrics.scrape();
        async move { scrape.oneshot(request).await }
    });
    let admin = ServiceExt::<Request<Body>>::map_response(admin, |r: Response<_>| r.map(Body::new));
    let services = [BoxCloneService::new(scrape), BoxCloneService::new(admin)];
    let listener = Steer::new(services, |request: &Request<Body>, _: &[_]| {
        usize::from(request.uri().path() != "/metrics")
    });
    Ok(Some(BoxCloneService::new(listener)))
}

/// The admin API over the gateway's keys and ledger, per `[admin]`.
pub fn admin(
    handles: &Arc<Handles>,
    config: &Config,
    reload_from: Option<String>,
) -> Result<Option<AdminService<Keys, Balances>>, String> {
    let Some(settings) = &config.admin else {
        return Ok(None);
    };
    let mut admin = AdminService::new(handles.keys.clone(), handles.ledger.clone());
    for entry in &settings.keys {
        admin = admin.admin_key_digest(entry.id.as_str(), entry.digest()?);
    }
    if let Some(prefix) = &config.auth.required_prefix {
        admin = admin.key_prefix(prefix.as_str());
    }
    if let Some(path) = reload_from {
        let handles = handles.clone();
        admin = admin.on_reload(move || {
            let (handles, path) = (handles.clone(), path.clone());
            async move { handles.reload_file(&path).await }
        });
    }
    Ok(Some(admin))
}

/// `GET` or `HEAD` of `/v1/models[/{id}]` goes to the catalog's list (the routes layer let
/// only well-formed listing paths through); everything else to `chat`. Both answer with one
/// body type, so that neither response nor service is boxed here: the gateway is cloned for
/// every request, and a clone of this is a clone of `chat`.
#[derive(Clone)]
struct ModelListOr<C> {
    list: ListModels,
    chat: C,
}

/// The body of [`ModelListOr`]'s responses.
type ListOrChatBody<B> = http_body_util::Either<http_body_util::Full<bytes::Bytes>, B>;

/// The future of [`ModelListOr`]'s responses.
type ListOrChatFuture<F, B> = futures_util::future::Either<
    std::future::Ready<Result<Response<ListOrChatBody<B>>, Infallible>>,
    futures_util::future::MapOk<F, fn(Response<B>) -> Response<ListOrChatBody<B>>>,
>;

impl<C, B> Service<Request<Body>> for ModelListOr<C>
where
    C: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    type Response = Response<ListOrChatBody<B>>;
    type Error = Infallible;
    type Future = ListOrChatFuture<C::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The list is always ready: it answers from the catalog in the call.
        self.chat.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        use futures_util::TryFutureExt;
        let path = request.uri().path();
        let method = request.method();
        if (method == Method::GET || method == Method::HEAD) && path.starts_with("/v1/models") {
            let listed = self.list.call(request).into_inner();
            let listed = listed.map(|response| response.map(ListOrChatBody::Left));
            return futures_util::future::Either::Left(std::future::ready(listed));
        }
        let to_body: fn(Response<B>) -> Response<ListOrChatBody<B>> =
            |response| response.map(ListOrChatBody::Right);
        futures_util::future::Either::Right(self.chat.call(request).map_ok(to_body))
    }
}
