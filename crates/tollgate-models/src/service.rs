use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use tollgate_core::{BoxError, ResponseBody, buffer_chat_request};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Shared;

/// The service of [`ModelCatalogLayer`](crate::ModelCatalogLayer); see there.
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
    /// A POST with a JSON body (or none declared) to an endpoint whose body names a model.
    fn names_a_model<B>(&self, request: &Request<B>) -> bool {
        let json = request.headers().get(CONTENT_TYPE).is_none_or(|value| {
            value.to_str().is_ok_and(|value| {
                let essence = value.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            })
        });
        request.method() == Method::POST
            && json
            && self.shared.endpoints.contains(request.uri().path())
    }
}
