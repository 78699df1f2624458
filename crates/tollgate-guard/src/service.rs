use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response};
use tollgate_core::body::BodyError;
use tollgate_core::{BoxError, GatewayError, ResponseBody, buffer_chat_request};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Config;

/// The service of [`RequestGuardLayer`](crate::RequestGuardLayer); see there.
#[derive(Debug)]
pub struct RequestGuard<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RequestGuard<S> {
    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        RequestGuard { inner, config }
    }
}

impl<S: Clone> Clone for RequestGuard<S> {
    fn clone(&self) -> Self {
        RequestGuard {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, B, ResBody> Service<Request<B>> for RequestGuard<S>
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
        let path = request.uri().path();
        if request.method() != Method::POST || !self.config.paths.iter().any(|p| **p == *path) {
            return ResponseFuture::passthrough(self.inner.call(request), self.config.clone());
        }
        let limit = self.config.body_limit.max_bytes();
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            let error = GatewayError::from(&BodyError::TooLarge { limit });
            return ResponseFuture::rejected(error, self.config.clone());
        }
        // The ready service handles this request; its clone stays for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let buffer = buffer_chat_request(request, self.config.body_limit);
        ResponseFuture::buffering(buffer, inner, self.config.clone())
    }
}
