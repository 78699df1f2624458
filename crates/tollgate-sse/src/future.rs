use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tollgate_core::{BoxError, BufferRequest, GatewayError};
use tower_service::Service;

use crate::layer::Config;
use crate::{SseBody, SseObservers};

/// What the response side needs from the request side.
pub(crate) struct Context {
    pub(crate) config: Arc<Config>,
    pub(crate) observers: Option<SseObservers>,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) strip_usage: bool,
}

pin_project! {
    /// The response future of [`SsePassthrough`](crate::SsePassthrough).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        context: Context,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Buffering { #[pin] buffer: BufferRequest<B>, inner: S },
        Inner { #[pin] future: S::Future },
        Rejected { error: Option<GatewayError> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn inner(future: S::Future, context: Context) -> Self {
        ResponseFuture {
            state: State::Inner { future },
            context,
        }
    }

    pub(crate) fn buffering(buffer: BufferRequest<B>, inner: S, context: Context) -> Self {
        ResponseFuture {
            state: State::Buffering { buffer, inner },
            context,
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<SseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(wrap(response, this.context)));
                }
                StateProj::Rejected { error } => {
                    let error = error.take().unwrap_or_else(GatewayError::internal);
                    return Poll::Ready(Ok(error.into_response().map(SseBody::rendered)));
                }
                StateProj::Buffering { buffer, inner } => match ready!(buffer.poll(cx)) {
                    Err(error) => State::Rejected {
                        error: Some(GatewayError::from(&error)),
                    },
                    Ok((mut request, parsed)) => {
                        if let Ok(chat) = parsed
                            && chat.stream()
                            && !chat.include_usage()
                        {
                            chat.with_include_usage().install(&mut request);
                            this.context.strip_usage = true;
                        }
                        State::Inner {
                            future: inner.call(request),
                        }
                    }
                },
            };
            this.state.set(next);
        }
    }
}

fn wrap<B>(response: Response<B>, context: &mut Context) -> Response<SseBody<B>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let is_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"));
    if !is_stream {
        return response.map(SseBody::passthrough);
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    parts.headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    let observers = context
        .observers
        .take()
        .map(|o| o.take())
        .unwrap_or_default();
    let mut body = SseBody::stream(
        body,
        observers,
        context.config.keep_alive,
        context.strip_usage,
        context.request_id.take(),
    );
    if context.config.drain_on_disconnect {
        body = body.drain_on_disconnect();
    }
    Response::from_parts(parts, body)
}
