//! The Responses API (`POST /v1/responses`): OpenAI's rules, and the prompt within the context
//! window.

use tollgate_core::chat::{Input, InputItem, JsonType};
use tollgate_core::{ChatRequest, ErrorKind, Field, GatewayError, PromptTokens};

use crate::tokens::{Encoding, MESSAGE_BOUND, PER_MESSAGE, REPLY_PRIMING, prompt_bound};
use crate::validate::{
    integer_at_least, missing, number_in, stream, unknown_member, within_max_output, wrong_type,
};

/// Top-level fields of OpenAI's Responses request (and the gateway's `fallbacks`), for strict
/// mode.
const KNOWN_FIELDS: &[&str] = &[
    "background",
    "conversation",
    "fallbacks",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// OpenAI's least `max_output_tokens`.
const MIN_OUTPUT_TOKENS: u64 = 16;

/// The rules, then the window: the prompt the body shows (`input`, `instructions`, `tools`) and
/// the output budget within the model's context window. When the provider adds turns the body
/// does not show, the prompt is reserved as the whole window less the output budget.
pub(crate) fn check(
    chat: &ChatRequest,
    strict: bool,
    window: Option<(u64, u64)>,
    encoding: impl Fn() -> Encoding,
) -> Result<PromptTokens, GatewayError> {
    validate(chat, strict)?;
    let bound = bound(chat);
    let Some((context_window, max_output)) = window else {
        return Ok(PromptTokens::AtMost(bound));
    };
    within_max_output(chat, max_output)?;
    let completion = chat.max_completion_tokens().unwrap_or(max_output);
    let prompt = if bound.saturating_add(completion) <= context_window {
        PromptTokens::AtMost(bound)
    } else {
        let tokens = count(chat, encoding());
        let requested = tokens.saturating_add(completion);
        if requested > context_window {
            return Err(GatewayError::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "This model's maximum context length is {context_window} tokens. However, you requested {requested} tokens ({tokens} in the input, {completion} in the output). Please reduce the length of the input or max_output_tokens."
                ),
            )
            .param("input")
            .code("context_length_exceeded")
            .detail("context_window", context_window)
            .detail("prompt_tokens", tokens)
            .detail("completion_tokens", completion));
        }
        PromptTokens::Exact(tokens)
    };
    if hides_turns(chat) {
        // The visible prompt fits beside the output, so this is at least as much.
        return Ok(PromptTokens::AtMost(
            context_window.saturating_sub(completion),
        ));
    }
    Ok(prompt)
}

fn validate(chat: &ChatRequest, strict: bool) -> Result<(), GatewayError> {
    if strict {
        unknown_member(chat, KNOWN_FIELDS)?;
    }
    const ITEM: &str = "an input item (an object)";
    match chat.input_field() {
        Field::Absent => return Err(missing("input")),
        Field::Invalid(found) => {
            return Err(wrong_type(
                "input",
                "a string or an array of input items",
                *found,
            ));
        }
        Field::Value(Input::Text(_)) => {}
        Field::Value(Input::Tokens(_)) => {
            return Err(wrong_type("input[0]", ITEM, JsonType::Number));
        }
        Field::Value(Input::Items(items)) => {
            let other = items
                .iter()
                .enumerate()
                .find(|(_, item)| !matches!(item, InputItem::Object(_)));
            if let Some((index, item)) = other {
                return Err(wrong_type(
                    &format!("input[{index}]"),
                    ITEM,
                    item.json_type(),
                ));
            }
        }
    }
    if let Field::Invalid(found) = chat.instructions_field() {
        return Err(wrong_type("instructions", "a string", *found));
    }
    integer_at_least(
        "max_output_tokens",
        chat.max_output_tokens_field(),
        MIN_OUTPUT_TOKENS,
    )?;
    number_in("temperature", chat.temperature_field(), 0.0, 2.0)?;
    number_in("top_p", chat.top_p_field(), 0.0, 1.0)?;
    stream(chat)
}

/// Whether the provider adds to the prompt what the body does not show: the earlier turns of a
/// stored conversation (`previous_response_id`, `conversation`), or a stored prompt (`prompt`, a
/// reference object on this endpoint).
fn hides_turns(chat: &ChatRequest) -> bool {
    chat.continues_conversation() || matches!(chat.prompt_field(), Field::Invalid(JsonType::Object))
}

/// An upper bound of the prompt's tokens: its JSON as written, plus a message's overhead for
/// `instructions` and for an `input` string, and the per-message tokens of each input item
/// (whose role and text are in its JSON).
fn bound(chat: &ChatRequest) -> u64 {
    let instructions = u64::from(chat.instructions_field().value().is_some());
    let (text_input, items) = match chat.input_field() {
        Field::Value(Input::Text(_)) => (1, 0),
        Field::Value(Input::Items(items)) => (0, items.len() as u64),
        _ => (0, 0),
    };
    prompt_bound(chat) + (instructions + text_input) * MESSAGE_BOUND + items * PER_MESSAGE
}

/// The prompt's tokens as OpenAI counts messages: `instructions` and an `input` string as one
/// message each, and each input item's text ([`ChatRequest::item_texts`]) as one message.
/// Images, files and tool definitions are not counted, as in chat's count.
fn count(chat: &ChatRequest, encoding: Encoding) -> u64 {
    let text = |span| encoding.count(&chat.text(span));
    let message = |role: &str, content| PER_MESSAGE + encoding.count(role) + text(content);
    let mut tokens = REPLY_PRIMING;
    if let Field::Value(instructions) = chat.instructions_field() {
        tokens += message("developer", *instructions);
    }
    match chat.input_field() {
        Field::Value(Input::Text(input)) => tokens += message("user", *input),
        Field::Value(Input::Items(items)) => {
            for item in items {
                if let InputItem::Object(span) = item {
                    let texts = chat.item_texts(*span);
                    tokens += PER_MESSAGE + texts.into_iter().map(text).sum::<u64>();
                }
            }
        }
        // Refused by validation.
        Field::Value(Input::Tokens(_)) | Field::Absent | Field::Invalid(_) => {}
    }
    tokens
}
