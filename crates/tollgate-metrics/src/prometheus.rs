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

pub use crate::buckets::{
    DURATION_BUCKETS, OVERHEAD_BUCKETS, TIME_PER_OUTPUT_TOKEN_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS,
    TOKEN_BUCKETS,
};

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
