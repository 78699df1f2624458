use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tollgate_core::body::BodyError;
use tollgate_core::{
    BoxError, BufferRequest, ChatRequest, ErrorKind, GatewayError, ModelInfo, PromptTokens,
    ResponseBody,
};
use tower_service::Service;

use crate::layer::Config;
use crate::tokens::{Encoding, count_prompt, prompt_bound};
use crate::validate::validate;

pin_project! {
    /// The response future of [`RequestGuard`](crate::RequestGuard).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        config: Arc<Config>,
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
    pub(crate) fn passthrough(future: S::Future, config: Arc<Config>) -> Self {
        ResponseFuture {
            state: State::Inner { future },
            config,
        }
    }

    pub(crate) fn rejected(error: GatewayError, config: Arc<Config>) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
            config,
        }
    }

    pub(crate) fn buffering(buffer: BufferRequest<B>, inner: S, config: Arc<Config>) -> Self {
        ResponseFuture {
            state: State::Buffering { buffer, inner },
            config,
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    return future
                        .poll(cx)
                        .map_ok(|response| response.map(ResponseBody::inner));
                }
                StateProj::Rejected { error } => {
                    let error = error.take().unwrap_or_else(GatewayError::internal);
                    return Poll::Ready(Ok(error.into_response().map(ResponseBody::from)));
                }
                StateProj::Buffering { buffer, inner } => match ready!(buffer.poll(cx)) {
                    Err(error) => State::Rejected {
                        error: Some(GatewayError::from(&error)),
                    },
                    Ok((_, Err(error))) => State::Rejected {
                        error: Some(GatewayError::from(&error)),
                    },
                    Ok((mut request, Ok(chat))) => {
                        let model = request.extensions().get::<ModelInfo>();
                        match check(&chat, model, this.config) {
                            Err(error) => State::Rejected { error: Some(error) },
                            Ok(tokens) => {
                                request.extensions_mut().insert(tokens);
                                State::Inner {
                                    future: inner.call(request),
                                }
                            }
                        }
                    }
                },
            };
            this.state.set(next);
        }
    }
}

/// Size (for a body another layer already read), validation, then the context window.
fn check(
    chat: &ChatRequest,
    model: Option<&ModelInfo>,
    config: &Config,
) -> Result<PromptTokens, GatewayError> {
    let limit = config.body_limit.max_bytes();
    if chat.body().len() > limit {
        return Err(GatewayError::from(&BodyError::TooLarge { limit }));
    }
    validate(chat, config.strict)?;
    let bound = prompt_bound(chat);
    let window = match model {
        Some(model) => Some((model.context_window, model.max_output_tokens)),
        None => config.fallback_window,
    };
    let Some((context_window, max_output)) = window else {
        return Ok(PromptTokens::AtMost(bound));
    };
    let completion = chat.max_completion_tokens().unwrap_or(max_output);
    if bound.saturating_add(completion) <= context_window {
        return Ok(PromptTokens::AtMost(bound));
    }
    let encoding =
        Encoding::for_model(model.map_or_else(|| chat.model().unwrap_or_default(), |m| &m.id));
    let prompt = count_prompt(chat, encoding);
    let requested = prompt.saturating_add(completion);
    if requested > context_window {
        return Err(GatewayError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "This model's maximum context length is {context_window} tokens. However, you requested {requested} tokens ({prompt} in the messages, {completion} in the completion). Please reduce the length of the messages or completion."
            ),
        )
        .param("messages")
        .code("context_length_exceeded")
        .detail("context_window", context_window)
        .detail("prompt_tokens", prompt)
        .detail("completion_tokens", completion));
    }
    Ok(PromptTokens::Exact(prompt))
}
