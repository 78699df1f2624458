//! `metrics-exporter-prometheus` for the metrics layer (feature `prometheus`): bucket
//! boundaries for the GenAI histograms, a [`Scrape`] of its handle, and its upkeep. The
//! crate's own [`TextRecorder`](crate::TextRecorder) needs none of this, and records a
//! histogram value for less.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{Scrape, names};

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

/// A [`Scrape`] of the recorder behind `handle`.
///
/// ```
/// use http::Request;
/// use metrics_exporter_prometheus::PrometheusBuilder;
/// use tollgate_core::Body;
/// use tower::ServiceExt;
///
/// # tokio_test::block_on(async {
/// let recorder = PrometheusBuilder::new().build_recorder();
/// let scrape = tollgate_metrics::prometheus::scrape(recorder.handle());
/// let response = scrape.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// ```
pub fn scrape(handle: PrometheusHandle) -> Scrape {
    Scrape::new(move || handle.render())
}

/// Drains `handle`'s recorded histogram samples into their buckets every `period`, on a Tokio
/// task, so that memory stays flat when no one scrapes for a while (a scrape drains them too).
///
/// ```
/// # tokio_test::block_on(async {
/// use std::time::Duration;
/// use metrics_exporter_prometheus::PrometheusBuilder;
///
/// let recorder = PrometheusBuilder::new().build_recorder();
/// tollgate_metrics::prometheus::spawn_upkeep(recorder.handle(), Duration::from_secs(5));
/// # });
/// ```
pub fn spawn_upkeep(handle: PrometheusHandle, period: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    });
}
