//! OpenAI's request rules, each failure a 400 naming the `param` and what to fix: chat
//! completions' here, and the helpers the other endpoints' rules share.

use serde_json::Number;
use tollgate_core::chat::{Content, InvalidPart, JsonType, PART_TYPES, Part};
use tollgate_core::{ChatRequest, ErrorKind, Field, GatewayError};

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

pub(crate) fn invalid(param: impl Into<String>, message: String) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidRequest, message).param(param.into())
}

pub(crate) fn missing(param: &str) -> GatewayError {
    invalid(param, format!("Missing required parameter: '{param}'."))
}

pub(crate) fn wrong_type(param: &str, expected: &str, found: JsonType) -> GatewayError {
    invalid(
        param,
        format!("Invalid type for '{param}': expected {expected}, but got {found} instead."),
    )
}

/// Strict mode: the first top-level member that is not one of `known`.
pub(crate) fn unknown_member(chat: &ChatRequest, known: &[&str]) -> Result<(), GatewayError> {
    match chat.members().find(|member| !known.contains(member)) {
        Some(field) => Err(invalid(
            field,
            format!("Unrecognized request argument supplied: {field}"),
        )),
        None => Ok(()),
    }
}

/// `stream`, when present, is a boolean.
pub(crate) fn stream(chat: &ChatRequest) -> Result<(), GatewayError> {
    match chat.stream_field() {
        Field::Invalid(found) => Err(wrong_type("stream", "a boolean", *found)),
        _ => Ok(()),
    }
}

/// `stream_options` of chat and legacy completions: an object whose `include_usage` is a
/// boolean, and only on a streamed request (as OpenAI answers).
pub(crate) fn stream_options(chat: &ChatRequest) -> Result<(), GatewayError> {
    match chat.stream_options_field() {
        Field::Absent => Ok(()),
        Field::Invalid(found) => Err(wrong_type("stream_options", "an object", *found)),
        Field::Value(options) => {
            if let Field::Invalid(found) = options.include_usage {
                return Err(wrong_type(
                    "stream_options.include_usage",
                    "a boolean",
                    found,
                ));
            }
            if !chat.stream() {
                return Err(invalid(
                    "stream_options",
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled."
                        .into(),
                ));
            }
            Ok(())
        }
    }
}

/// The requested completion budget, refused when it is above what the model can write (OpenAI
/// answers 400 rather than trimming it).
pub(crate) fn within_max_output(chat: &ChatRequest, max_output: u64) -> Result<(), GatewayError> {
    let Some(requested) = chat.max_completion_tokens() else {
        return Ok(());
    };
    if requested <= max_output {
        return Ok(());
    }
    // The field `max_completion_tokens()` read, in its order.
    let param = [
        ("max_completion_tokens", chat.max_completion_tokens_field()),
        ("max_output_tokens", chat.max_output_tokens_field()),
        ("max_tokens", chat.max_tokens_field()),
    ]
    .into_iter()
    .find(|(_, field)| field.value().and_then(Number::as_u64) == Some(requested))
    .map_or("max_tokens", |(param, _)| param);
    Err(invalid(
        param,
        format!(
            "{param} is too large: {requested}. This model supports at most {max_output} completion tokens, whereas you provided {requested}."
        ),
    )
    .code("invalid_value")
    .detail("max_output_tokens", max_output))
}

/// The sampling parameters chat and legacy completions share, each within OpenAI's range.
pub(crate) fn sampling(chat: &ChatRequest) -> Result<(), GatewayError> {
    number_in("temperature", chat.temperature_field(), 0.0, 2.0)?;
    number_in("top_p", chat.top_p_field(), 0.0, 1.0)?;
    number_in("presence_penalty", chat.presence_penalty_field(), -2.0, 2.0)?;
    number_in(
        "frequency_penalty",
        chat.frequency_penalty_field(),
        -2.0,
        2.0,
    )?;
    Ok(())
}

/// Checks the request against OpenAI's rules; the first violation is the answer.
pub(crate) fn validate(chat: &ChatRequest, strict: bool) -> Result<(), GatewayError> {
    if strict && let Some(field) = chat.unknown_fields().first() {
        return Err(invalid(
            field.to_string(),
            format!("Unrecognized request argument supplied: {field}"),
        ));
    }
    messages(chat)?;
    sampling(chat)?;
    positive_integer("max_tokens", chat.max_tokens_field(), u64::MAX)?;
    positive_integer(
        "max_completion_tokens",
        chat.max_completion_tokens_field(),
        u64::MAX,
    )?;
    positive_integer("n", chat.n_field(), 128)?;
    stream(chat)?;
    stream_options(chat)
}

fn messages(chat: &ChatRequest) -> Result<(), GatewayError> {
    let messages = match chat.messages_field() {
        Field::Absent => return Err(missing("messages")),
        Field::Invalid(found) => {
            return Err(wrong_type("messages", "an array of messages", *found));
        }
        Field::Value(messages) => messages,
    };
    if messages.is_empty() {
        return Err(invalid(
            "messages",
            "Invalid 'messages': empty array. Expected an array with at least one message, but got an empty array instead.".into(),
        ));
    }
    for (index, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{index}].{field}");
        let message = match message {
            Ok(message) => message,
            Err(found) => {
                return Err(wrong_type(
                    &format!("messages[{index}]"),
                    "an object",
                    *found,
                ));
            }
        };
        let role = match &message.role {
            Field::Absent => return Err(missing(&at("role"))),
            Field::Invalid(found) => return Err(wrong_type(&at("role"), "a string", *found)),
            Field::Value(role) => chat.text(*role),
        };
        if !ROLES.contains(&&*role) {
            let shown: String = role.chars().take(40).collect();
            return Err(invalid(
                at("role"),
                format!(
                    "Invalid value for '{}': '{shown}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.",
                    at("role")
                ),
            ));
        }
        match &message.content {
            // An assistant message that calls tools may leave its content out.
            Content::Absent if role == "assistant" && message.has_tool_calls => {}
            Content::Absent => return Err(missing(&at("content"))),
            Content::Invalid(found) => {
                return Err(wrong_type(
                    &at("content"),
                    "a string or an array of content parts",
                    *found,
                ));
            }
            Content::Parts(parts) if parts.is_empty() => {
                return Err(invalid(
                    at("content"),
                    format!(
                        "Invalid '{}': empty array. Expected at least one content part, but got an empty array instead.",
                        at("content")
                    ),
                ));
            }
            Content::Parts(parts) => {
                for (at_part, part) in parts.iter().enumerate() {
                    if let Part::Invalid(why) = part {
                        return Err(invalid_part(
                            chat,
                            &at(&format!("content[{at_part}]")),
                            *why,
                        ));
                    }
                }
            }
            Content::Text(_) => {}
        }
    }
    Ok(())
}

/// A numeric field found invalid: of another JSON type, or a number too large for a 64-bit
/// float (`1e999`), which the parse records as an invalid number.
fn not_a(param: &str, expected: &str, found: JsonType) -> GatewayError {
    match found {
        JsonType::Number => invalid(
            param,
            format!(
                "Invalid '{param}': number out of range. Expected {expected} a 64-bit float can hold, but got a larger one instead."
            ),
        ),
        other => wrong_type(param, expected, other),
    }
}

/// A content part OpenAI refuses, in its words.
fn invalid_part(chat: &ChatRequest, param: &str, why: InvalidPart) -> GatewayError {
    match why {
        InvalidPart::NotAnObject(found) => wrong_type(param, "an object", found),
        InvalidPart::Type(None) => missing(&format!("{param}.type")),
        InvalidPart::Type(Some(found)) => wrong_type(&format!("{param}.type"), "a string", found),
        InvalidPart::UnknownType(kind) => {
            let shown: String = chat.text(kind).chars().take(40).collect();
            let supported = PART_TYPES.map(|kind| format!("'{kind}'")).join(", ");
            invalid(
                format!("{param}.type"),
                format!("Invalid value: '{shown}'. Supported values are: {supported}."),
            )
            .code("invalid_value")
        }
        InvalidPart::Text(None) => missing(&format!("{param}.text")),
        InvalidPart::Text(Some(found)) => wrong_type(&format!("{param}.text"), "a string", found),
    }
}

pub(crate) fn number_in(
    param: &str,
    field: &Field<Number>,
    min: f64,
    max: f64,
) -> Result<(), GatewayError> {
    match field {
        Field::Absent => Ok(()),
        Field::Invalid(found) => Err(not_a(param, "a number", *found)),
        Field::Value(number) => match number.as_f64() {
            Some(value) if (min..=max).contains(&value) => Ok(()),
            _ => Err(invalid(
                param,
                format!(
                    "Invalid '{param}': expected a value between {min} and {max}, but got {number} instead."
                ),
            )),
        },
    }
}

pub(crate) fn positive_integer(
    param: &str,
    field: &Field<Number>,
    max: u64,
) -> Result<(), GatewayError> {
    match field {
        Field::Absent => Ok(()),
        Field::Invalid(found) => Err(not_a(param, "an integer", *found)),
        Field::Value(number) => match number.as_u64() {
            Some(value) if (1..=max).contains(&value) => Ok(()),
            _ if max == u64::MAX => Err(invalid(
                param,
                format!(
                    "Invalid '{param}': expected a positive integer, but got {number} instead."
                ),
            )),
            _ => Err(invalid(
                param,
                format!(
                    "Invalid '{param}': expected an integer between 1 and {max}, but got {number} instead."
                ),
            )),
        },
    }
}

/// An integer of at least `min`, in OpenAI's words when it is not.
pub(crate) fn integer_at_least(
    param: &str,
    field: &Field<Number>,
    min: u64,
) -> Result<(), GatewayError> {
    let number = match field {
        Field::Absent => return Ok(()),
        Field::Invalid(found) => return Err(not_a(param, "an integer", *found)),
        Field::Value(number) => number,
    };
    if number.is_f64() {
        return Err(invalid(
            param,
            format!(
                "Invalid type for '{param}': expected an integer, but got a decimal number instead."
            ),
        )
        .code("invalid_type"));
    }
    match number.as_u64() {
        Some(value) if value >= min => Ok(()),
        _ => Err(invalid(
            param,
            format!(
                "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {number} instead."
            ),
        )
        .code("integer_below_min_value")),
    }
}
