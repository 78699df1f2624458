use std::any::Any;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use tollgate_core::GatewayError;

/// A panic handler for tower-http's `CatchPanicLayer::custom`: logs the panic message and
/// answers a 500 `internal_error` envelope (which `ErrorEnvelopeLayer` then completes with the
/// request id). The panic message never reaches the client.
///
/// ```
/// use std::convert::Infallible;
/// use http::Request;
/// use tollgate_core::Body;
/// use tollgate_error::{ErrorEnvelopeLayer, panic_response};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_http::catch_panic::CatchPanicLayer;
///
/// # tokio_test::block_on(async {
/// let service = ServiceBuilder::new()
///     .layer(ErrorEnvelopeLayer::new())
///     .layer(CatchPanicLayer::custom(panic_response))
///     .service_fn(|_request: Request<Body>| async {
///         if true {
///             panic!("secret detail");
///         }
///         Ok::<_, Infallible>(http::Response::new(Body::empty()))
///     });
/// let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
/// assert_eq!(response.status(), 500);
/// # });
/// ```
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Full<Bytes>> {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    tracing::error!(panic = message, "request handler panicked");
    GatewayError::internal().into_response()
}
