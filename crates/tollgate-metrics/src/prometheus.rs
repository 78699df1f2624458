//! Prometheus text exposition through `metrics-exporter-prometheus` (feature `prometheus`):
//! bucket boundaries for the GenAI histograms and a `/metrics` service.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tollgate_core::{Body, ErrorKind, GatewayError};

use crate::names;

/// OpenTelemetry's recommended boundaries for `gen_ai.server.request.duration`, seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// OpenTelemetry's recommended boundaries for `gen_ai.server.time_to_first_token`, seconds.
pub const TIME_TO_FIRST_TOKEN_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// OpenTelemetry's recommended boundaries for `gen_ai.server.time_per_output_token`, seconds.
pub const TIME_PER_OUTPUT_TOKEN_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// OpenTelemetry's recommended boundaries for `gen_ai.client.token.usage`, tokens.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Boundaries for `tollgate.server.overhead`, seconds: from 10 µs, where a gateway's own work
/// lies, to a second.
pub const OVERHEAD_BUCKETS: [f64; 12] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1.0,
];

/// `builder` with the GenAI histograms bucketed (rather than summarized), at the boundaries
/// above.
///
/// ```
/// use metrics_exporter_prometheus::PrometheusBuilder;
///
/// let recorder = tollgate_metrics::prometheus::gen_ai_buckets(PrometheusBuilder::new())?
///     .build_recorder();
/// # let _ = recorder;
/// # Ok::<(), metrics_exporter_prometheus::BuildError>(())
/// ```
pub fn gen_ai_buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    let full = |name: &str| Matcher::Full(name.replace('.', "_"));
    builder
        .set_buckets_for_metric(full(names::REQUEST_DURATION), &DURATION_BUCKETS)?
        .set_buckets_for_metric(full(names::TIME_TO_HEAD), &DURATION_BUCKETS)?
        .set_buckets_for_metric(
            full(names::TIME_TO_FIRST_TOKEN),
            &TIME_TO_FIRST_TOKEN_BUCKETS,
        )?
        .set_buckets_for_metric(
            full(names::TIME_PER_OUTPUT_TOKEN),
            &TIME_PER_OUTPUT_TOKEN_BUCKETS,
        )?
        .set_buckets_for_metric(full(names::TOKEN_USAGE), &TOKEN_BUCKETS)?
        .set_buckets_for_metric(full(names::OVERHEAD), &OVERHEAD_BUCKETS)
}

/// Answers `GET` (and `HEAD`) with the Prometheus text exposition of `handle`'s recorder;
/// other methods get a 405 envelope. Mount it where the scraper looks (`/metrics`).
///
/// ```
/// use http::Request;
/// use metrics_exporter_prometheus::PrometheusBuilder;
/// use tollgate_core::Body;
/// use tollgate_metrics::prometheus::Scrape;
/// use tower::ServiceExt;
///
/// # tokio_test::block_on(async {
/// let recorder = PrometheusBuilder::new().build_recorder();
/// let scrape = Scrape::new(recorder.handle());
/// let response = scrape.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Scrape {
    handle: PrometheusHandle,
}

impl Scrape {
    /// Serves `handle`'s metrics.
    pub fn new(handle: PrometheusHandle) -> Self {
        Scrape { handle }
    }

    /// Drains the recorded histogram samples into their buckets every `period`, on a Tokio
    /// task, so that memory stays flat when no one scrapes for a while (a scrape drains them
    /// too).
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use std::time::Duration;
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use tollgate_metrics::prometheus::Scrape;
    ///
    /// let scrape = Scrape::new(PrometheusBuilder::new().build_recorder().handle());
    /// scrape.spawn_upkeep(Duration::from_secs(5));
    /// # });
    /// ```
    pub fn spawn_upkeep(&self, period: Duration) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

impl<B> tower_service::Service<Request<B>> for Scrape {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let error = GatewayError::new(
                ErrorKind::MethodNotAllowed,
                "The metrics are read with GET.",
            );
            return ready(Ok(error.into_response().map(Body::new)));
        }
        let text = if method == Method::HEAD {
            String::new()
        } else {
            self.handle.render()
        };
        let mut response = Response::new(Body::from(text));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        ready(Ok(response))
    }
}
