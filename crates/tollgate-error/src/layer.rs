use std::sync::Arc;

use http::HeaderName;
use tollgate_core::request_id::X_REQUEST_ID;
use tower_layer::Layer;

use crate::{Canonical, ErrorEnvelope, RenderError};

/// Renders every error of the stack below it as one JSON envelope with the request id; see
/// the [crate documentation](crate).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tollgate_core::{Body, ErrorKind, GatewayError};
/// use tollgate_error::ErrorEnvelopeLayer;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio_test::block_on(async {
/// let service = ServiceBuilder::new()
///     .layer(ErrorEnvelopeLayer::new())
///     .service_fn(|_request: Request<Body>| async {
///         Ok::<_, Infallible>(GatewayError::new(ErrorKind::Forbidden, "No access.").into_response())
///     });
/// let request = Request::builder().header("x-request-id", "req_1").body(Body::empty()).unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 403);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ErrorEnvelopeLayer<R = Canonical> {
    shared: Arc<Shared<R>>,
}

#[derive(Debug)]
pub(crate) struct Shared<R> {
    pub(crate) renderer: R,
    pub(crate) request_id_header: HeaderName,
}

impl ErrorEnvelopeLayer {
    /// The canonical envelope, with the request id from `x-request-id`.
    pub fn new() -> Self {
        ErrorEnvelopeLayer {
            shared: Arc::new(Shared {
                renderer: Canonical,
                request_id_header: X_REQUEST_ID,
            }),
        }
    }
}

impl Default for ErrorEnvelopeLayer {
    fn default() -> Self {
        ErrorEnvelopeLayer::new()
    }
}

impl<R: RenderError> ErrorEnvelopeLayer<R> {
    /// Renders errors in another dialect.
    ///
    /// ```
    /// use tollgate_error::{ErrorEnvelopeLayer, StatusCodeDialect};
    ///
    /// let layer = ErrorEnvelopeLayer::new().renderer(StatusCodeDialect);
    /// # let _ = layer;
    /// ```
    pub fn renderer<R2: RenderError>(self, renderer: R2) -> ErrorEnvelopeLayer<R2> {
        ErrorEnvelopeLayer {
            shared: Arc::new(Shared {
                renderer,
                request_id_header: self.shared.request_id_header.clone(),
            }),
        }
    }

    /// Reads the request id from another header.
    ///
    /// ```
    /// use tollgate_error::ErrorEnvelopeLayer;
    ///
    /// let layer = ErrorEnvelopeLayer::new()
    ///     .request_id_header(http::HeaderName::from_static("x-correlation-id"));
    /// # let _ = layer;
    /// ```
    pub fn request_id_header(self, header: HeaderName) -> Self {
        ErrorEnvelopeLayer {
            shared: Arc::new(Shared {
                renderer: self.shared.renderer.clone(),
                request_id_header: header,
            }),
        }
    }
}

impl<S, R> Layer<S> for ErrorEnvelopeLayer<R> {
    type Service = ErrorEnvelope<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorEnvelope::from_shared(inner, self.shared.clone())
    }
}
