use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tollgate_core::{Telemetry, TraceContext};
use tower_service::Service;

use crate::body::MetricsBody;
use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::record::InFlight;
use crate::series::Route;

/// The service [`MetricsLayer`](crate::MetricsLayer) makes: measures every request and puts
/// its [`Telemetry`] (with the W3C trace context continued from the client's `traceparent`, or
/// started by an exported span) in the request extensions for the layers below.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tollgate_core::{Body, Telemetry};
/// use tollgate_metrics::Metrics;
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let service = Metrics::layer().layer(service_fn(|request: Request<Body>| async move {
///     assert!(request.extensions().get::<Telemetry>().is_some());
///     Ok::<_, Infallible>(Response::new(Body::empty()))
/// }));
/// # use tower::Layer;
/// let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// ```
#[derive(Clone)]
pub struct Metrics<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Metrics<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics<()> {
    /// A [`MetricsLayer`](crate::MetricsLayer) into the global recorder.
    pub fn layer() -> crate::MetricsLayer {
        crate::MetricsLayer::new()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let route = Route::of(request.uri().path());
        // The request span of tollgate's trace layer (an INFO span), when the metrics layer is
        // inside it. Asking for the current span costs more than the rest of this call: not
        // when INFO is off everywhere.
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::Span::current()
        } else {
            tracing::Span::none()
        };
        let trace = TraceContext::continue_from(request.headers());
        // An exported request span continues the client's trace (or starts one), and its id
        // goes upstream.
        #[cfg(feature = "otlp")]
        let trace = crate::otlp::exported_trace(&span, trace);
        let telemetry = match trace {
            Some(trace) => Telemetry::with_trace(trace),
            None => Telemetry::new(),
        };
        request.extensions_mut().insert(telemetry.clone());
        let in_flight = Box::new(InFlight::start(
            self.shared.clone(),
            route,
            telemetry,
            started,
            span,
        ));
        ResponseFuture {
            inner: self.inner.call(request),
            in_flight: Some(in_flight),
        }
    }
}
