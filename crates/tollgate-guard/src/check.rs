//! The guard's check: size (for a body another layer already read), then validation and the
//! context window by the request's endpoint.

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_LENGTH;
use tollgate_core::admission::{Admission, Start, Verdict};
use tollgate_core::body::BodyError;
use tollgate_core::{
    BodyArrived, BoxError, ChatRequest, Endpoint, ErrorKind, GatewayError, ModelInfo, PromptTokens,
    ReadBody,
};

use crate::layer::Config;
use crate::tokens::{Encoding, count_prompt, prompt_bound};
use crate::validate::{validate, within_max_output};
use crate::{RequestGuardLayer, completions, embeddings, responses};

impl<B> Admission<B> for RequestGuardLayer
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Ticket = ();
    type Pending = ReadBody<B>;

    fn start(&self, request: &mut Request<B>) -> Start<(), ReadBody<B>> {
        if !self.config.paths.is_post_to(request) {
            return Start::Decided(Verdict::Admit(()));
        }
        let limit = self.config.body_limit.max_bytes();
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            let error = GatewayError::from(&BodyError::TooLarge { limit });
            return Start::Decided(Verdict::Reject(error, ()));
        }
        Start::with_body(self, request, self.config.body_limit)
    }

    fn resume(&self, arrived: BodyArrived, request: &mut Request<B>) -> Verdict<()> {
        let chat = match arrived.chat(request) {
            Ok(chat) => chat,
            Err(error) => return Verdict::Reject(error, ()),
        };
        match check(&chat, request, &self.config) {
            Ok(tokens) => {
                request.extensions_mut().insert(tokens);
                Verdict::Admit(())
            }
            Err(error) => Verdict::Reject(error, ()),
        }
    }
}

fn check<B>(
    chat: &ChatRequest,
    request: &Request<B>,
    config: &Config,
) -> Result<PromptTokens, GatewayError> {
    let limit = config.body_limit.max_bytes();
    if chat.body().len() > limit {
        return Err(GatewayError::from(&BodyError::TooLarge { limit }));
    }
    let model = request.extensions().get::<ModelInfo>();
    let window = match model {
        Some(model) => Some((model.context_window, model.max_output_tokens)),
        None => config.fallback_window,
    };
    let encoding =
        || Encoding::for_model(model.map_or_else(|| chat.model().unwrap_or_default(), |m| &m.id));
    // The routing layer's endpoint, else the path's; a path of neither is held to chat's rules.
    let endpoint = request
        .extensions()
        .get::<Endpoint>()
        .copied()
        .or_else(|| Endpoint::from_path(request.uri().path()));
    match endpoint {
        Some(Endpoint::Responses) => responses::check(chat, config.strict, window, encoding),
        Some(Endpoint::Embeddings) => embeddings::check(chat, config.strict, window, encoding),
        Some(Endpoint::Completions) => completions::check(chat, config.strict, window, encoding),
        _ => chat_completions(chat, config.strict, window, encoding),
    }
}

/// Chat completions: the rules, then the messages and the completion budget within the window.
fn chat_completions(
    chat: &ChatRequest,
    strict: bool,
    window: Option<(u64, u64)>,
    encoding: impl Fn() -> Encoding,
) -> Result<PromptTokens, GatewayError> {
    validate(chat, strict)?;
    let bound = prompt_bound(chat);
    let Some((context_window, max_output)) = window else {
        return Ok(PromptTokens::AtMost(bound));
    };
    within_max_output(chat, max_output)?;
    let completion = chat.max_completion_tokens().unwrap_or(max_output);
    if bound.saturating_add(completion) <= context_window {
        return Ok(PromptTokens::AtMost(bound));
    }
    let prompt = count_prompt(chat, encoding());
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
