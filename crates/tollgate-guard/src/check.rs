//! The guard's check: size (for a body another layer already read), validation, then the
//! context window.

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_LENGTH;
use tollgate_core::admission::{Admission, Start, Verdict};
use tollgate_core::body::BodyError;
use tollgate_core::{
    BodyArrived, BoxError, ChatRequest, ErrorKind, GatewayError, ModelInfo, PromptTokens, ReadBody,
};

use crate::RequestGuardLayer;
use crate::layer::Config;
use crate::tokens::{Encoding, count_prompt, prompt_bound};
use crate::validate::validate;

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
        let model = request.extensions().get::<ModelInfo>();
        match check(&chat, model, &self.config) {
            Ok(tokens) => {
                request.extensions_mut().insert(tokens);
                Verdict::Admit(())
            }
            Err(error) => Verdict::Reject(error, ()),
        }
    }
}

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
