use std::fmt;
use std::sync::Arc;

use metrics::Recorder;
use tower_layer::Layer;

use crate::Metrics;
use crate::series::{Registrar, Series};

/// Records every request's metrics, in OpenTelemetry's GenAI vocabulary, through the
/// [`metrics`] facade: durations, time to first token and per output token, tokens, cost,
/// outcome, upstream attempts, the gateway's overhead and what is in flight. See the
/// [crate docs](crate) for the series.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tollgate_core::Body;
/// use tollgate_metrics::MetricsLayer;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio_test::block_on(async {
/// // Into the globally installed recorder (a Prometheus exporter, OpenTelemetry, ...).
/// let service = ServiceBuilder::new()
///     .layer(MetricsLayer::new().key_labels(false))
///     .service_fn(|_request: Request<Body>| async {
///         Ok::<_, Infallible>(Response::new(Body::empty()))
///     });
/// let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// ```
#[derive(Clone)]
pub struct MetricsLayer {
    pub(crate) shared: Arc<Shared>,
}

/// What every request of a layer shares.
pub(crate) struct Shared {
    pub(crate) series: Series,
    pub(crate) key_labels: bool,
    pub(crate) account_labels: bool,
}

impl Default for MetricsLayer {
    fn default() -> Self {
        MetricsLayer::new()
    }
}

impl fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("key_labels", &self.shared.key_labels)
            .field("account_labels", &self.shared.account_labels)
            .finish_non_exhaustive()
    }
}

impl MetricsLayer {
    /// Records into the global recorder ([`metrics::set_global_recorder`]), which must be
    /// installed before the first request: handles are registered then, and kept. No key or
    /// account labels.
    pub fn new() -> Self {
        MetricsLayer::with(Registrar::default(), false, false)
    }

    fn with(registrar: Registrar, key_labels: bool, account_labels: bool) -> Self {
        MetricsLayer {
            shared: Arc::new(Shared {
                series: Series::new(registrar),
                key_labels,
                account_labels,
            }),
        }
    }

    /// Records into `recorder` instead of the global one (a test's, or one of several
    /// exporters).
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use tollgate_metrics::MetricsLayer;
    ///
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let handle = recorder.handle();
    /// let layer = MetricsLayer::new().recorder(recorder);
    /// # let _ = (layer, handle);
    /// ```
    pub fn recorder(self, recorder: impl Recorder + Send + Sync + 'static) -> Self {
        let registrar = Registrar::new(Some(Arc::new(recorder)));
        MetricsLayer::with(
            registrar,
            self.shared.key_labels,
            self.shared.account_labels,
        )
    }

    /// Adds `tollgate.key.id` to every series of an authenticated request, and the
    /// `tollgate.ratelimit.remaining` gauge per key. Off by default: every key makes its own
    /// series.
    ///
    /// ```
    /// let layer = tollgate_metrics::MetricsLayer::new().key_labels(true);
    /// # let _ = layer;
    /// ```
    pub fn key_labels(self, on: bool) -> Self {
        self.rebuilt(|shared| shared.key_labels = on)
    }

    /// Adds `tollgate.account.id` to every series of an authenticated request, and the
    /// `tollgate.balance.unreserved` gauge per account. Off by default, like key labels.
    ///
    /// ```
    /// let layer = tollgate_metrics::MetricsLayer::new().account_labels(true);
    /// # let _ = layer;
    /// ```
    pub fn account_labels(self, on: bool) -> Self {
        self.rebuilt(|shared| shared.account_labels = on)
    }

    /// The same layer with `change` made: the registered handles are dropped, since their
    /// label sets change.
    fn rebuilt(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared {
            series: Series::new(self.shared.series.registrar.clone()),
            key_labels: self.shared.key_labels,
            account_labels: self.shared.account_labels,
        };
        change(&mut shared);
        MetricsLayer {
            shared: Arc::new(shared),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            shared: self.shared.clone(),
        }
    }
}
