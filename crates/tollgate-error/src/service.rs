use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tollgate_core::{BoxError, ResponseBody};
use tower_service::Service;

use crate::layer::Shared;
use crate::{Canonical, ErrorEnvelopeLayer, RenderError, ResponseFuture};

/// The service of [`ErrorEnvelopeLayer`]; see there.
#[derive(Debug)]
pub struct ErrorEnvelope<S, R = Canonical> {
    inner: S,
    shared: Arc<Shared<R>>,
    /// The inner service failed to become ready; the next call answers with this error.
    not_ready: Option<BoxError>,
}

impl<S> ErrorEnvelope<S> {
    /// Wraps `inner` with the canonical envelope.
    ///
    /// ```
    /// use tollgate_error::ErrorEnvelope;
    ///
    /// let service = ErrorEnvelope::new(tower::service_fn(|_: http::Request<tollgate_core::Body>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(tollgate_core::Body::empty()))
    /// }));
    /// # let _ = service;
    /// ```
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&ErrorEnvelopeLayer::new(), inner)
    }

    /// The layer: [`ErrorEnvelopeLayer::new`].
    pub fn layer() -> ErrorEnvelopeLayer {
        ErrorEnvelopeLayer::new()
    }
}

impl<S, R> ErrorEnvelope<S, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<R>>) -> Self {
        ErrorEnvelope {
            inner,
            shared,
            not_ready: None,
        }
    }
}

impl<S: Clone, R> Clone for ErrorEnvelope<S, R> {
    fn clone(&self) -> Self {
        ErrorEnvelope {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            not_ready: None,
        }
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorEnvelope<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes>,
    R: RenderError,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                // The error type is Infallible, so the failure is answered as an envelope by
                // the call this readiness was for.
                self.not_ready = Some(error.into());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let request_id = request
            .headers()
            .get(&self.shared.request_id_header)
            .cloned();
        match self.not_ready.take() {
            Some(error) => ResponseFuture::failed(error, self.shared.clone(), request_id),
            None => ResponseFuture::new(self.inner.call(request), self.shared.clone(), request_id),
        }
    }
}
