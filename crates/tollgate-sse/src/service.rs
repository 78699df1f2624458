use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::{BoxError, ChatRequest, buffer_chat_request};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Config;
use crate::{SseBody, SseObservers};

/// The service of [`SsePassthroughLayer`](crate::SsePassthroughLayer); see there.
#[derive(Debug)]
pub struct SsePassthrough<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SsePassthrough<S> {
    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        SsePassthrough { inner, config }
    }
}

impl<S: Clone> Clone for SsePassthrough<S> {
    fn clone(&self) -> Self {
        SsePassthrough {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, B, ResBody> Service<Request<B>> for SsePassthrough<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<SseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let request_id = request.headers().get(X_REQUEST_ID).cloned();
        // Observers matter only for a stream; a request known not to stream skips them.
        let known_not_streaming = request
            .extensions()
            .get::<ChatRequest>()
            .is_some_and(|chat| !chat.stream());
        let observers = (!known_not_streaming).then(|| {
            let observers = SseObservers::default();
            request.extensions_mut().insert(observers.clone());
            observers
        });
        let context = crate::future::Context {
            config: self.config.clone(),
            observers,
            request_id,
            strip_usage: false,
        };
        if self.config.inject_usage && is_chat_json(&request) {
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let buffer = buffer_chat_request(request, self.config.body_limit);
            return ResponseFuture::buffering(buffer, inner, context);
        }
        ResponseFuture::inner(self.inner.call(request), context)
    }
}

/// A chat completion request; its body is JSON whatever `content-type` says, unless it is a
/// multipart upload.
fn is_chat_json<B>(request: &Request<B>) -> bool {
    request.method() == Method::POST
        && request.uri().path() == "/v1/chat/completions"
        && !request.headers().get(CONTENT_TYPE).is_some_and(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/")
            })
        })
}
