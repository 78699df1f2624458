//! Embeddings (`POST /v1/embeddings`): OpenAI's rules, and each input within the context
//! window.

use tollgate_core::{ChatRequest, ErrorKind, Field, GatewayError, PromptTokens};

use crate::inputs::{Piece, fit, param_of, pieces};
use crate::tokens::Encoding;
use crate::validate::{integer_at_least, invalid, unknown_member, wrong_type};

/// Top-level fields of OpenAI's embeddings request (and the gateway's `fallbacks`), for strict
/// mode.
const KNOWN_FIELDS: &[&str] = &[
    "dimensions",
    "encoding_format",
    "fallbacks",
    "input",
    "model",
    "user",
];

/// The most inputs OpenAI embeds in one request.
const MAX_INPUTS: usize = 2048;

/// The rules, then the window: each input (not their sum) within the model's context window,
/// as the model embeds each on its own.
pub(crate) fn check(
    chat: &ChatRequest,
    strict: bool,
    window: Option<(u64, u64)>,
    encoding: impl Fn() -> Encoding,
) -> Result<PromptTokens, GatewayError> {
    if strict {
        unknown_member(chat, KNOWN_FIELDS)?;
    }
    let pieces = pieces("input", chat.input_field())?;
    if pieces.len() > MAX_INPUTS {
        return Err(invalid(
            "input",
            format!(
                "Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}, but got an array with length {} instead.",
                pieces.len()
            ),
        )
        .code("array_above_max_length"));
    }
    for &(index, piece) in &pieces {
        let empty = match piece {
            Piece::Text(text) if text.raw_len() == 0 => {
                "empty string. Expected a non-empty string, but got an empty string instead."
            }
            Piece::Tokens(0) => {
                "empty array. Expected at least one token id, but got an empty array instead."
            }
            Piece::Text(_) | Piece::Tokens(_) => continue,
        };
        let at = param_of("input", index);
        return Err(invalid(&at, format!("Invalid '{at}': {empty}")));
    }
    integer_at_least("dimensions", chat.dimensions_field(), 1)?;
    encoding_format(chat)?;
    // An embedding generates nothing: the whole window is the input's.
    let window = window.map(|(context_window, _)| (context_window, 0));
    fit(chat, &pieces, window, encoding, |index, tokens| {
        let context_window = window.map_or(0, |(context_window, _)| context_window);
        let at = param_of("input", index);
        GatewayError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "This model's maximum context length is {context_window} tokens. However, '{at}' has {tokens} tokens. Please shorten it, or split it into several inputs."
            ),
        )
        .param(at)
        .code("context_length_exceeded")
        .detail("context_window", context_window)
        .detail("prompt_tokens", tokens)
    })
}

fn encoding_format(chat: &ChatRequest) -> Result<(), GatewayError> {
    let format = match chat.encoding_format_field() {
        Field::Absent => return Ok(()),
        Field::Invalid(found) => return Err(wrong_type("encoding_format", "a string", *found)),
        Field::Value(format) => chat.text(*format),
    };
    if format == "float" || format == "base64" {
        return Ok(());
    }
    let shown: String = format.chars().take(40).collect();
    Err(invalid(
        "encoding_format",
        format!(
            "Invalid value for 'encoding_format': '{shown}'. Supported values are: 'float' and 'base64'."
        ),
    ))
}
