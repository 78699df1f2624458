//! Legacy completions (`POST /v1/completions`): OpenAI's rules, and each prompt within the
//! context window.

use tollgate_core::{ChatRequest, ErrorKind, GatewayError, PromptTokens};

use crate::inputs::{fit, param_of, pieces};
use crate::tokens::Encoding;
use crate::validate::{
    invalid, positive_integer, sampling, stream, stream_options, unknown_member, within_max_output,
};

/// Top-level fields of OpenAI's legacy completions request (and the gateway's `fallbacks`), for
/// strict mode.
const KNOWN_FIELDS: &[&str] = &[
    "best_of",
    "echo",
    "fallbacks",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "model",
    "n",
    "presence_penalty",
    "prompt",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

/// OpenAI's `max_tokens` default on `/v1/completions`.
const DEFAULT_MAX_TOKENS: u64 = 16;

/// The rules, then the window: each prompt of a batch is completed on its own, so each, with
/// `max_tokens` (16 by default), must fit the model's context window.
pub(crate) fn check(
    chat: &ChatRequest,
    strict: bool,
    window: Option<(u64, u64)>,
    encoding: impl Fn() -> Encoding,
) -> Result<PromptTokens, GatewayError> {
    if strict {
        unknown_member(chat, KNOWN_FIELDS)?;
    }
    let pieces = pieces("prompt", chat.prompt_field())?;
    sampling(chat)?;
    positive_integer("max_tokens", chat.max_tokens_field(), u64::MAX)?;
    positive_integer("n", chat.n_field(), 128)?;
    positive_integer("best_of", chat.best_of_field(), 20)?;
    best_of(chat)?;
    stream(chat)?;
    stream_options(chat)?;
    if let Some((_, max_output)) = window {
        within_max_output(chat, max_output)?;
    }
    let completion = chat.max_completion_tokens().unwrap_or(DEFAULT_MAX_TOKENS);
    let window = window.map(|(context_window, _)| (context_window, completion));
    fit(chat, &pieces, window, encoding, |index, tokens| {
        let context_window = window.map_or(0, |(context_window, _)| context_window);
        let at = param_of("prompt", index);
        let requested = tokens.saturating_add(completion);
        GatewayError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "This model's maximum context length is {context_window} tokens. However, you requested {requested} tokens ({tokens} in '{at}', {completion} in the completion). Please reduce the length of the prompt or completion."
            ),
        )
        .param(at)
        .code("context_length_exceeded")
        .detail("context_window", context_window)
        .detail("prompt_tokens", tokens)
        .detail("completion_tokens", completion)
    })
}

/// `best_of` candidates are generated to return `n` of them: it cannot be fewer.
fn best_of(chat: &ChatRequest) -> Result<(), GatewayError> {
    let integer = |field: &tollgate_core::Field<serde_json::Number>| field.value()?.as_u64();
    match (integer(chat.best_of_field()), integer(chat.n_field())) {
        (Some(best_of), Some(n)) if best_of < n => Err(invalid(
            "best_of",
            format!("Invalid 'best_of': it must be at least 'n' ({n}), but got {best_of} instead."),
        )),
        _ => Ok(()),
    }
}
