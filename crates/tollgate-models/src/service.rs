use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use tollgate_core::{BoxError, ResponseBody, buffer_chat_request};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Shared;

/// The service of [`ModelResolutionLayer`](crate::ModelResolutionLayer); see there.
#[derive(Debug)]
pub struct ModelResolution<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ModelResolution<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        ModelResolution { inner, shared }
    }
}

impl<S: Clone> Clone for ModelResolution<S> {
    fn clone(&self) -> Self {
        ModelResolution {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, B, ResBody> Service<Request<B>> for ModelResolution<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.names_a_model(&request) {
            return ResponseFuture::passthrough(self.inner.call(request), self.shared.clone());
        }
        let limit = self.shared.body_limit;
        // The ready service handles this request; its clone stays for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::buffering(
            buffer_chat_request(request, limit),
            inner,
            self.shared.clone(),
        )
    }
}

impl<S> ModelResolution<S> {
    /// A POST to an endpoint whose body names a model. Only multipart uploads are left alone
    /// (their model is a form field); any other body is read as JSON whatever its declared
    /// type, so a wrong `content-type` cannot slip a request past the catalog.
    fn names_a_model<B>(&self, request: &Request<B>) -> bool {
        let multipart = request.headers().get(CONTENT_TYPE).is_some_and(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/")
            })
        });
        request.method() == Method::POST
            && !multipart
            && self.shared.endpoints.contains(request.uri().path())
    }
}
