//! One log line per request with tower-http's `TraceLayer`: [`layer`] builds it, or use
//! [`RequestSpan`] and [`LogResponse`] in your own.
//!
//! The span carries the method, the path, the request id (`x-request-id`, so put the trace
//! layer inside tower-http's `SetRequestIdLayer`) and an empty `key_id` that the auth layer
//! fills in. When the response head is sent, one `served` event in that span gives the status,
//! the latency, the model that answered (`x-tollgate-model`) and the error type, if any.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tollgate::core::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let service = ServiceBuilder::new()
//!     .layer(tollgate::trace::layer())
//!     .service_fn(|_request: Request<Body>| async {
//!         Ok::<_, Infallible>(Response::new(Body::empty()))
//!     });
//! let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # });
//! ```

use std::time::Duration;

use http::{HeaderMap, HeaderName, Request, Response};
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::{GatewayError, X_MODEL};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{DefaultOnBodyChunk, DefaultOnEos, MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

/// The trace layer [`layer`] builds: [`RequestSpan`] spans, a [`LogResponse`] line, nothing
/// logged on the request or on failures (the response line says it all).
pub type GatewayTraceLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    RequestSpan,
    (),
    LogResponse,
    DefaultOnBodyChunk,
    DefaultOnEos,
    (),
>;

/// tower-http's `TraceLayer` for HTTP with [`RequestSpan`] and [`LogResponse`].
pub fn layer() -> GatewayTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(LogResponse)
        .on_failure(())
}

/// Makes an info-level `request` span with `method`, `path`, `request_id` and empty fields the
/// layers inside record: `key_id` (the auth layer, once it knows the caller), and `trace_id`,
/// `endpoint`, `account`, `request_model`, `response_model`, `input_tokens`, `output_tokens`,
/// `cost` and `error_type` (the metrics layer, the last ones once the response is done, for
/// a span exporter).
///
/// ```
/// use tower_http::trace::TraceLayer;
///
/// let layer = TraceLayer::new_for_http().make_span_with(tollgate::trace::RequestSpan);
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        // The fields' values are looked up only when the span is enabled (inside the macro).
        // Quoted (`?`): no path or id can end its field and forge another.
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = ?request.uri().path(),
            request_id = ?header_text(request.headers(), &X_REQUEST_ID),
            key_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            endpoint = tracing::field::Empty,
            account = tracing::field::Empty,
            request_model = tracing::field::Empty,
            response_model = tracing::field::Empty,
            input_tokens = tracing::field::Empty,
            output_tokens = tracing::field::Empty,
            cost = tracing::field::Empty,
            error_type = tracing::field::Empty,
        )
    }
}

/// Logs one info-level `served` event per response: `status`, `latency_ms`, `model` (from
/// `x-tollgate-model`, `-` when none answered) and `error` (the envelope's type, `-` on
/// success).
///
/// ```
/// use tower_http::trace::TraceLayer;
///
/// let layer = TraceLayer::new_for_http().on_response(tollgate::trace::LogResponse);
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        // The fields' values are looked up only when the event is enabled (inside the macro).
        tracing::info!(
            parent: span,
            status = response.status().as_u16(),
            latency_ms = latency.as_millis() as u64,
            model = header_text(response.headers(), &X_MODEL),
            error = response
                .extensions()
                .get::<GatewayError>()
                .map_or("-", |error| error.kind.type_str()),
            "served"
        );
    }
}

/// A header's value as text, `-` when it is missing or not text.
fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use http::Request;
    use tower_http::trace::MakeSpan;

    use super::RequestSpan;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_path_or_request_id_cannot_forge_another_field() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = Request::post("/v1/x%7Dkey_id=key_admin")
                .header("x-request-id", "a key_id=key_admin")
                .body(())
                .unwrap();
            let span = RequestSpan.make_span(&request);
            tracing::info!(parent: &span, "served");
        });
        let line = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            line.contains(r#"request_id="a key_id=key_admin""#),
            "{line}"
        );
        assert!(
            line.contains(r#"path="/v1/x%7Dkey_id=key_admin""#),
            "{line}"
        );
        let unquoted: String = line.split('"').step_by(2).collect();
        assert!(!unquoted.contains("key_id="), "{line}");
    }
}

/// UUID v4 request ids for tower-http's `SetRequestIdLayer`, like its `MakeRequestUuid` but
/// from [`new_request_id`](tollgate_core::request_id::new_request_id): no system call per
/// request.
///
/// ```
/// use http::{Request, Response};
/// use tollgate::core::Body;
/// use tollgate::trace::SeededRequestUuid;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_http::request_id::SetRequestIdLayer;
///
/// # tokio_test::block_on(async {
/// let service = ServiceBuilder::new()
///     .layer(SetRequestIdLayer::x_request_id(SeededRequestUuid))
///     .service_fn(|request: Request<Body>| async move {
///         let id = request.headers()["x-request-id"].to_str().unwrap().to_owned();
///         Ok::<_, std::convert::Infallible>(Response::new(id))
///     });
/// let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
/// assert_eq!(response.body().len(), 36);
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SeededRequestUuid;

impl MakeRequestId for SeededRequestUuid {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        Some(RequestId::new(tollgate_core::request_id::new_request_id()))
    }
}
