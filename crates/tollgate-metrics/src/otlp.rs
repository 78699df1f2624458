//! OpenTelemetry export over OTLP, HTTP/protobuf (feature `otlp`): the metrics through a
//! [`metrics::Recorder`] that a periodic reader exports ([`metrics_recorder`]), the spans
//! through a `tracing` layer ([`tracer_provider`], [`span_layer`]).
//!
//! With the span layer installed, the `request` span of tollgate's trace layer continues the
//! client's trace: the [`MetricsLayer`](crate::MetricsLayer) makes it a child of the span in
//! the client's `traceparent`, and sends the exported span's id on to the provider, so the
//! provider's spans hang under the gateway's. When the client sent no `traceparent`, the span
//! starts the trace whose id goes upstream (with [`tracer_provider`]'s provider).
//!
//! The exporters send to `{endpoint}/v1/metrics` and `{endpoint}/v1/traces`; without an
//! endpoint, the standard `OTEL_EXPORTER_OTLP_*` variables apply, else
//! `http://localhost:4318`. The HTTP client is reqwest's blocking one, on the SDK's own export
//! threads, without TLS: for an `https` collector, add `opentelemetry-otlp` with its
//! `reqwest-rustls` feature to the application.
//!
//! ```no_run
//! use std::time::Duration;
//! use tollgate_metrics::MetricsLayer;
//! use tollgate_metrics::otlp::{self, OtlpConfig};
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = OtlpConfig::new()
//!     .endpoint("http://localhost:4318")
//!     .service_name("gateway")
//!     .export_interval(Duration::from_secs(10));
//! let (recorder, meters) = otlp::metrics_recorder(&config)?;
//! let metrics = MetricsLayer::new().recorder(recorder);
//! let tracers = otlp::tracer_provider(&config)?;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(otlp::span_layer(&tracers))
//!     .init();
//! // ... serve, with `metrics` inside tollgate's trace layer ...
//! # let _ = metrics;
//! // At shutdown, what is still buffered goes out.
//! meters.shutdown()?;
//! tracers.shutdown()?;
//! # Ok(())
//! # }
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
    SharedString, Unit,
};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::{
    SpanContext, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer};
use tollgate_core::{SpanId, TraceContext};
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _, SetParentError};
use tracing_subscriber::registry::LookupSpan;

use crate::{buckets, names};

pub use opentelemetry_otlp::ExporterBuildError;
pub use opentelemetry_sdk::metrics::SdkMeterProvider;
pub use opentelemetry_sdk::trace::SdkTracerProvider;

/// Where and how the exporters send: the collector's base URL, the service name, headers,
/// the metrics' export interval and the export timeout. Anything left unset takes the SDK's
/// default, or its standard `OTEL_*` environment variable.
///
/// ```
/// use std::time::Duration;
/// use tollgate_metrics::otlp::OtlpConfig;
///
/// let config = OtlpConfig::new()
///     .endpoint("http://collector:4318")
///     .service_name("gateway")
///     .header("authorization", "Bearer secret")
///     .export_interval(Duration::from_secs(15))
///     .timeout(Duration::from_secs(5));
/// # let _ = config;
/// ```
#[derive(Clone, Default)]
pub struct OtlpConfig {
    endpoint: Option<String>,
    service_name: Option<String>,
    headers: HashMap<String, String>,
    export_interval: Option<Duration>,
    timeout: Option<Duration>,
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are often credentials: names only.
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("export_interval", &self.export_interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OtlpConfig {
    /// Nothing set: the `OTEL_*` environment variables and the SDK's defaults apply.
    ///
    /// ```
    /// let config = tollgate_metrics::otlp::OtlpConfig::new();
    /// # let _ = config;
    /// ```
    pub fn new() -> Self {
        OtlpConfig::default()
    }

    /// The collector's base URL, such as `http://localhost:4318`: metrics go to
    /// `{endpoint}/v1/metrics`, spans to `{endpoint}/v1/traces`.
    ///
    /// ```
    /// let config = tollgate_metrics::otlp::OtlpConfig::new().endpoint("http://localhost:4318");
    /// # let _ = config;
    /// ```
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The resource's `service.name` (else `OTEL_SERVICE_NAME`, else `unknown_service`).
    ///
    /// ```
    /// let config = tollgate_metrics::otlp::OtlpConfig::new().service_name("gateway");
    /// # let _ = config;
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// A header on every export request, such as a collector's API key.
    ///
    /// ```
    /// let config = tollgate_metrics::otlp::OtlpConfig::new().header("x-api-key", "secret");
    /// # let _ = config;
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// How often the metrics are exported (else `OTEL_METRIC_EXPORT_INTERVAL`, else 60 s).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = tollgate_metrics::otlp::OtlpConfig::new().export_interval(Duration::from_secs(10));
    /// # let _ = config;
    /// ```
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = Some(interval);
        self
    }

    /// How long one export request may take (else `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = tollgate_metrics::otlp::OtlpConfig::new().timeout(Duration::from_secs(3));
    /// # let _ = config;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// `builder` (a metric or span exporter's) sending HTTP/protobuf to `{endpoint}{path}`.
    fn configure<B: WithExportConfig + WithHttpConfig>(&self, builder: B, path: &str) -> B {
        let mut builder = builder.with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = &self.endpoint {
            // Set in code, the endpoint is the signal's full URL.
            builder = builder.with_endpoint(format!("{}{path}", endpoint.trim_end_matches('/')));
        }
        if let Some(timeout) = self.timeout {
            builder = builder.with_timeout(timeout);
        }
        if !self.headers.is_empty() {
            builder = builder.with_headers(self.headers.clone());
        }
        builder
    }

    fn resource(&self) -> Resource {
        let resource = Resource::builder();
        match &self.service_name {
            Some(name) => resource.with_service_name(name.clone()).build(),
            None => resource.build(),
        }
    }
}

/// The instrumentation scope of tollgate's meters and tracers.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tollgate")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// A recorder whose metrics a periodic reader exports to `config`'s collector, every
/// [`export_interval`](OtlpConfig::export_interval), and the provider to shut down (which
/// exports what is left) when the process ends. Give the recorder to
/// [`MetricsLayer::recorder`](crate::MetricsLayer::recorder) or install it with
/// [`metrics::set_global_recorder`]. The GenAI histograms get the boundaries of
/// [`buckets`].
///
/// ```no_run
/// use tollgate_metrics::MetricsLayer;
/// use tollgate_metrics::otlp::{self, OtlpConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (recorder, provider) = otlp::metrics_recorder(&OtlpConfig::new())?;
/// let layer = MetricsLayer::new().recorder(recorder);
/// # let _ = layer;
/// // ... serve ...
/// provider.shutdown()?;
/// # Ok(())
/// # }
/// ```
pub fn metrics_recorder(
    config: &OtlpConfig,
) -> Result<(OtlpRecorder, SdkMeterProvider), ExporterBuildError> {
    let exporter = config
        .configure(MetricExporter::builder().with_http(), "/v1/metrics")
        .build()?;
    let mut reader = PeriodicReader::builder(exporter);
    if let Some(interval) = config.export_interval {
        reader = reader.with_interval(interval);
    }
    let provider = SdkMeterProvider::builder()
        .with_reader(reader.build())
        .with_resource(config.resource())
        .build();
    let recorder = OtlpRecorder::new(provider.meter_with_scope(scope()));
    Ok((recorder, provider))
}

/// A [`metrics::Recorder`] into an OpenTelemetry [`Meter`]: counters become counters,
/// histograms histograms (bucketed at [`buckets`] for the GenAI series),
/// gauges observable gauges read at each export. [`metrics_recorder`] makes one that exports
/// over OTLP; [`new`](OtlpRecorder::new) takes any meter.
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
/// use tollgate_metrics::otlp::OtlpRecorder;
///
/// let provider = SdkMeterProvider::builder().build();
/// let recorder = OtlpRecorder::new(provider.meter("tollgate"));
/// let layer = tollgate_metrics::MetricsLayer::new().recorder(recorder);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct OtlpRecorder {
    inner: Arc<Instruments>,
}

impl fmt::Debug for OtlpRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpRecorder").finish_non_exhaustive()
    }
}

/// A meter and what was made of it, one instrument per name: the SDK would export a name
/// built twice with different units or descriptions as two metrics.
struct Instruments {
    meter: Meter,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    descriptions: HashMap<KeyName, (Option<Unit>, SharedString)>,
    counters: HashMap<KeyName, opentelemetry::metrics::Counter<u64>>,
    histograms: HashMap<KeyName, opentelemetry::metrics::Histogram<f64>>,
    gauges: HashMap<KeyName, GaugeSeries>,
}

/// A gauge's label sets and their values, which its callback reports at each export.
type GaugeSeries = Arc<Mutex<HashMap<Key, Arc<GaugeValue>>>>;

impl OtlpRecorder {
    /// Records into `meter`.
    ///
    /// ```
    /// use opentelemetry::metrics::MeterProvider as _;
    /// use opentelemetry_sdk::metrics::SdkMeterProvider;
    ///
    /// let meter = SdkMeterProvider::builder().build().meter("tollgate");
    /// let recorder = tollgate_metrics::otlp::OtlpRecorder::new(meter);
    /// # let _ = recorder;
    /// ```
    pub fn new(meter: Meter) -> Self {
        OtlpRecorder {
            inner: Arc::new(Instruments {
                meter,
                state: Mutex::default(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The maps stay consistent whatever panicked while holding them.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The unit as OpenTelemetry writes it (UCUM).
fn ucum(name: &str, unit: Unit) -> Option<&'static str> {
    match unit {
        Unit::Seconds => Some("s"),
        Unit::Milliseconds => Some("ms"),
        Unit::Microseconds => Some("us"),
        Unit::Nanoseconds => Some("ns"),
        Unit::Bytes => Some("By"),
        Unit::Percent => Some("%"),
        Unit::Count if name == names::TOKEN_USAGE => Some("{token}"),
        _ => None,
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|label| KeyValue::new(label.key().to_owned(), label.value().to_owned()))
        .collect()
}

impl metrics::Recorder for OtlpRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.state().descriptions.insert(key, (unit, description));
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.state().descriptions.insert(key, (unit, description));
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.state().descriptions.insert(key, (unit, description));
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        let mut state = self.state();
        let state = &mut *state;
        let name = key.name();
        let counter = match state.counters.get(name) {
            Some(counter) => counter.clone(),
            None => {
                let mut builder = self.inner.meter.u64_counter(name.to_owned());
                if let Some((unit, help)) = state.descriptions.get(name) {
                    builder = builder.with_description(help.to_string());
                    if let Some(unit) = unit.and_then(|unit| ucum(name, unit)) {
                        builder = builder.with_unit(unit);
                    }
                }
                let counter = builder.build();
                state.counters.insert(key.name_shared(), counter.clone());
                counter
            }
        };
        Counter::from_arc(Arc::new(CounterHandle {
            counter,
            attributes: attributes(key),
            total: AtomicU64::new(0),
        }))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        let mut state = self.state();
        let state = &mut *state;
        let name = key.name();
        let series = match state.gauges.get(name) {
            Some(series) => series.clone(),
            None => {
                let series = GaugeSeries::default();
                let observed = series.clone();
                let mut builder = self
                    .inner
                    .meter
                    .f64_observable_gauge(name.to_owned())
                    .with_callback(move |observer| {
                        let series = observed.lock().unwrap_or_else(PoisonError::into_inner);
                        for (key, value) in series.iter() {
                            observer.observe(value.get(), &attributes(key));
                        }
                    });
                if let Some((unit, help)) = state.descriptions.get(name) {
                    builder = builder.with_description(help.to_string());
                    if let Some(unit) = unit.and_then(|unit| ucum(name, unit)) {
                        builder = builder.with_unit(unit);
                    }
                }
                // The callback is the instrument: the SDK keeps it, the handle is a marker.
                builder.build();
                state.gauges.insert(key.name_shared(), series.clone());
                series
            }
        };
        // One value per label set, however often it is registered, as the facade expects.
        let value = series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        Gauge::from_arc(value)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        let mut state = self.state();
        let state = &mut *state;
        let name = key.name();
        let histogram = match state.histograms.get(name) {
            Some(histogram) => histogram.clone(),
            None => {
                let mut builder = self.inner.meter.f64_histogram(name.to_owned());
                if let Some((unit, help)) = state.descriptions.get(name) {
                    builder = builder.with_description(help.to_string());
                    if let Some(unit) = unit.and_then(|unit| ucum(name, unit)) {
                        builder = builder.with_unit(unit);
                    }
                }
                if let Some(boundaries) = buckets::for_histogram(name) {
                    builder = builder.with_boundaries(boundaries.to_vec());
                }
                let histogram = builder.build();
                state
                    .histograms
                    .insert(key.name_shared(), histogram.clone());
                histogram
            }
        };
        Histogram::from_arc(Arc::new(HistogramHandle {
            histogram,
            attributes: attributes(key),
        }))
    }
}

struct CounterHandle {
    counter: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    /// What was counted, for [`absolute`](CounterFn::absolute): OpenTelemetry counters only add.
    total: AtomicU64,
}

impl CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
        self.counter.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let before = self.total.fetch_max(value, Ordering::Relaxed);
        if value > before {
            self.counter.add(value - before, &self.attributes);
        }
    }
}

struct HistogramHandle {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for HistogramHandle {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attributes);
    }
}

/// A gauge's value, an `f64` in an atomic's bits.
#[derive(Default)]
struct GaugeValue(AtomicU64);

impl GaugeValue {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn add(&self, delta: f64) {
        // The closure always returns `Some`: the update cannot fail.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + delta).to_bits())
            });
    }
}

impl GaugeFn for GaugeValue {
    fn increment(&self, value: f64) {
        self.add(value);
    }

    fn decrement(&self, value: f64) {
        self.add(-value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// A tracer provider whose batch processor exports spans to `config`'s collector; shut it
/// down (which exports what is left) when the process ends. Its new traces take the trace id
/// that the gateway sends upstream, so a request without a client `traceparent` is one trace
/// from the gateway to the provider.
///
/// ```no_run
/// use tollgate_metrics::otlp::{self, OtlpConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let provider = otlp::tracer_provider(&OtlpConfig::new().endpoint("http://localhost:4318"))?;
/// // ... serve, with otlp::span_layer(&provider) in the subscriber ...
/// provider.shutdown()?;
/// # Ok(())
/// # }
/// ```
pub fn tracer_provider(config: &OtlpConfig) -> Result<SdkTracerProvider, ExporterBuildError> {
    let exporter = config
        .configure(SpanExporter::builder().with_http(), "/v1/traces")
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(GatewayIds::default())
        .with_resource(config.resource())
        .build())
}

/// The layer [`span_layer`] makes.
pub type SpanLayer<S> = OpenTelemetryLayer<S, SdkTracer>;

/// A `tracing` layer turning spans into OpenTelemetry spans of `provider` (made by
/// [`tracer_provider`], or any SDK provider), so that the request span continues the client's
/// trace (see the [module docs](self)).
///
/// A span's OpenTelemetry context is not made current when the span is entered (it would
/// start the span before the metrics layer could give it the client's span as its parent):
/// parents come from `tracing`'s current span, and `opentelemetry::Context::current()` does
/// not follow the spans. A child span starts its parent too, so put the metrics layer inside
/// the trace layer before any layer that opens spans of its own.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let provider = SdkTracerProvider::builder().build();
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer())
///     .with(tollgate_metrics::otlp::span_layer(&provider));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("request").in_scope(|| tracing::info!("in the request span"));
/// });
/// ```
pub fn span_layer<S>(provider: &SdkTracerProvider) -> SpanLayer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer_with_scope(scope()))
        .with_context_activation(false)
}

thread_local! {
    /// The trace id that the next new trace on this thread takes: set by [`continue_trace`]
    /// while it starts a request span that has no client parent.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Random ids, except a new trace's id when [`continue_trace`] asks for one.
#[derive(Debug, Default)]
struct GatewayIds(RandomIdGenerator);

impl IdGenerator for GatewayIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.0.new_span_id()
    }
}

/// The request's trace with `span`, when tracing-opentelemetry exports it, as the gateway's
/// span: the client's trace continued, or a new one; without an exported span, the client's
/// trace (if any) as it came.
pub(crate) fn exported_trace(
    span: &tracing::Span,
    client: Option<TraceContext>,
) -> Option<TraceContext> {
    if span.is_disabled() {
        return client;
    }
    let trace = client.unwrap_or_else(TraceContext::start);
    match continue_trace(span, &trace) {
        Some(span_id) => Some(trace.with_span_id(span_id)),
        // A trace the gateway started and records no span of is no one's.
        None => trace.parent_span_id().is_some().then_some(trace),
    }
}

/// Makes `span`, when tracing-opentelemetry exports it, part of `trace`: the child of the
/// client's span, or with no client span the root of `trace`'s trace id. Returns the exported
/// span's id, the gateway's span id to send upstream; `None` when `span` is not exported, or
/// was started in another trace (by a layer that starts spans on entry, or a provider with its
/// own id generator and no client parent).
pub(crate) fn continue_trace(span: &tracing::Span, trace: &TraceContext) -> Option<SpanId> {
    if span.is_disabled() {
        return None;
    }
    let trace_id = TraceId::from_bytes(trace.trace_id().0);
    match trace.parent_span_id() {
        Some(parent) => {
            let flags = if trace.sampled() {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::NOT_SAMPLED
            };
            let state = trace
                .tracestate()
                .and_then(|state| state.to_str().ok())
                .and_then(|state| state.parse::<TraceState>().ok())
                .unwrap_or_default();
            let client = SpanContext::new(
                trace_id,
                opentelemetry::trace::SpanId::from_bytes(parent.0),
                flags,
                true,
                state,
            );
            let parent = Context::new().with_remote_span_context(client);
            // Already started is judged below, by the trace id it started in.
            if let Err(SetParentError::LayerNotFound | SetParentError::SpanDisabled) =
                span.set_parent(parent)
            {
                return None;
            }
        }
        None => NEXT_TRACE_ID.with(|next| next.set(Some(trace_id))),
    }
    // Starts the OpenTelemetry span, which takes its ids now.
    let context = span.context();
    // Not taken if the span was started before, or has a parent.
    NEXT_TRACE_ID.with(|next| next.set(None));
    let exported = context.span();
    let started = exported.span_context();
    if started.is_valid() && started.trace_id() == trace_id {
        Some(SpanId(started.span_id().to_bytes()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn client_trace() -> TraceContext {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        TraceContext::continue_from(&headers).unwrap()
    }

    #[test]
    fn a_span_not_exported_is_left_alone() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            assert_eq!(continue_trace(&span, &client_trace()), None);
            assert_eq!(continue_trace(&span, &TraceContext::start()), None);
        });
        assert_eq!(
            continue_trace(&tracing::Span::none(), &client_trace()),
            None
        );
    }

    #[test]
    fn the_span_becomes_the_child_of_the_client_span() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            let trace = client_trace();
            let id = continue_trace(&span, &trace).unwrap();
            let context = span.context();
            let started = context.span();
            let started = started.span_context();
            assert_eq!(started.trace_id().to_bytes(), trace.trace_id().0);
            assert_eq!(started.span_id().to_bytes(), id.0);
            assert_ne!(id, trace.parent_span_id().unwrap());
        });
    }

    #[test]
    fn without_a_client_span_the_span_starts_the_trace_sent_upstream() {
        let provider = tracer_provider_without_export();
        let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            let trace = TraceContext::start();
            let id = continue_trace(&span, &trace).unwrap();
            let context = span.context();
            let started = context.span();
            assert_eq!(
                started.span_context().trace_id().to_bytes(),
                trace.trace_id().0
            );
            assert_eq!(started.span_context().span_id().to_bytes(), id.0);
            // Taken once: the next new trace is random.
            assert_eq!(NEXT_TRACE_ID.with(Cell::get), None);
        });
    }

    #[test]
    fn a_span_started_on_entry_in_another_trace_is_left_alone() {
        // tracing-opentelemetry's default layer starts a span when it is entered.
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            assert_eq!(continue_trace(&span, &client_trace()), None);
        });
    }

    fn tracer_provider_without_export() -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_id_generator(GatewayIds::default())
            .build()
    }

    #[test]
    fn histograms_of_the_gen_ai_series_are_bucketed() {
        assert_eq!(
            buckets::for_histogram(names::REQUEST_DURATION),
            Some(&buckets::DURATION_BUCKETS[..])
        );
        assert_eq!(buckets::for_histogram(names::REQUESTS), None);
        assert_eq!(ucum(names::TOKEN_USAGE, Unit::Count), Some("{token}"));
        assert_eq!(ucum(names::REQUEST_DURATION, Unit::Seconds), Some("s"));
    }
}
