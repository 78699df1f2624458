//! The reading a request view must agree with: serde_json's, on the bodies serde_json reads as
//! an object without duplicate members.
//!
//! Shared by the property tests (`tests/properties.rs`) and the fuzz targets (`fuzz/`), which
//! include this file by path.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use tollgate_core::chat::{
    Content, Input, InputItem, InvalidPart, JsonType, KNOWN_FIELDS, Message, PART_TYPES, Part,
    StrSpan,
};
use tollgate_core::{ChatRequest, Field};

/// `body` as serde_json reads it, when that is an object in which no object, at any depth,
/// names a member twice (serde_json would silently keep the last; the view refuses some).
pub fn strict_object(body: &[u8]) -> Option<Map<String, Value>> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = StrictValue.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    match value {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// Builds a [`Value`] like serde_json's own, but fails on a duplicate member.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue)?;
            if object.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Parses `body` into a view and checks it: no panic, no view of a body that is not JSON, and
/// on a body serde_json reads as an object without duplicate members, a view that agrees with
/// serde_json's reading.
pub fn check_parse(body: &[u8]) -> Option<ChatRequest> {
    let parsed = ChatRequest::parse(Bytes::copy_from_slice(body));
    if let Ok(chat) = &parsed {
        assert_eq!(chat.body(), body);
        let json = serde_json::from_slice::<de::IgnoredAny>(body);
        assert!(json.is_ok(), "a view of a body that is not JSON: {json:?}");
    }
    if let Some(object) = strict_object(body) {
        match &parsed {
            Ok(chat) => assert_agrees(chat, &object),
            Err(error) => panic!("serde_json reads an object, the view fails: {error}"),
        }
    }
    parsed.ok()
}

fn json_type(value: &Value) -> JsonType {
    match value {
        Value::Null => JsonType::Null,
        Value::Bool(_) => JsonType::Bool,
        Value::Number(_) => JsonType::Number,
        Value::String(_) => JsonType::String,
        Value::Array(_) => JsonType::Array,
        Value::Object(_) => JsonType::Object,
    }
}

/// A member as the view sees it: `None` when absent or `null`.
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// Whether a value is a token id; `None` when serde_json's reading cannot tell: an integer
/// past `u64::MAX` (a token id as written) and `1e20` (not one) are the same `f64` to it.
fn token_id(value: &Value) -> Option<bool> {
    const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;
    match value {
        Value::Number(number) if number.is_u64() => Some(true),
        Value::Number(number) if number.as_f64().is_some_and(|f| f >= TWO_TO_THE_64) => None,
        _ => Some(false),
    }
}

/// Asserts that `chat`, the view of a body, reads every field as serde_json read `object`
/// from the same body.
pub fn assert_agrees(chat: &ChatRequest, object: &Map<String, Value>) {
    let check_string = |name: &str, field: &Field<StrSpan>| match present(object, name) {
        None => assert_eq!(field, &Field::Absent, "{name}"),
        Some(Value::String(text)) => match field {
            Field::Value(span) => assert_eq!(chat.text(*span), *text, "{name}"),
            other => panic!("{name}: {other:?}, not the string {text:?}"),
        },
        Some(other) => assert_eq!(field, &Field::Invalid(json_type(other)), "{name}"),
    };
    let check_bool = |name: &str, field: &Field<bool>, value: Option<&Value>| match value {
        None => assert_eq!(field, &Field::Absent, "{name}"),
        Some(Value::Bool(flag)) => assert_eq!(field, &Field::Value(*flag), "{name}"),
        Some(other) => assert_eq!(field, &Field::Invalid(json_type(other)), "{name}"),
    };
    let check_number = |name: &str, field: &Field<Number>| match present(object, name) {
        None => assert_eq!(field, &Field::Absent, "{name}"),
        Some(Value::Number(number)) => assert_eq!(field, &Field::Value(number.clone()), "{name}"),
        Some(other) => assert_eq!(field, &Field::Invalid(json_type(other)), "{name}"),
    };
    // A span's JSON text reads as the value it stands for.
    let check_raw = |name: &str, raw: &str, value: &Value| {
        let read: Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&read, value, "{name}");
    };

    assert_eq!(
        chat.model(),
        present(object, "model").and_then(Value::as_str),
        "model"
    );
    check_string("model", chat.model_field());
    check_string("instructions", chat.instructions_field());
    check_string("encoding_format", chat.encoding_format_field());
    check_bool("stream", chat.stream_field(), present(object, "stream"));
    assert_eq!(
        chat.stream(),
        object.get("stream") == Some(&Value::Bool(true))
    );
    for name in [
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "temperature",
        "top_p",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "dimensions",
        "best_of",
    ] {
        let field = match name {
            "max_tokens" => chat.max_tokens_field(),
            "max_completion_tokens" => chat.max_completion_tokens_field(),
            "max_output_tokens" => chat.max_output_tokens_field(),
            "temperature" => chat.temperature_field(),
            "top_p" => chat.top_p_field(),
            "n" => chat.n_field(),
            "presence_penalty" => chat.presence_penalty_field(),
            "frequency_penalty" => chat.frequency_penalty_field(),
            "dimensions" => chat.dimensions_field(),
            _ => chat.best_of_field(),
        };
        check_number(name, field);
    }
    let positive = |name| {
        present(object, name)
            .and_then(Value::as_u64)
            .filter(|&n| n > 0)
    };
    assert_eq!(
        chat.max_completion_tokens(),
        positive("max_completion_tokens")
            .or_else(|| positive("max_output_tokens"))
            .or_else(|| positive("max_tokens")),
        "the completion budget"
    );

    match present(object, "stream_options") {
        None => assert_eq!(
            chat.stream_options_field(),
            &Field::Absent,
            "stream_options"
        ),
        Some(Value::Object(options)) => {
            let Field::Value(found) = chat.stream_options_field() else {
                panic!("stream_options: {:?}", chat.stream_options_field());
            };
            check_raw(
                "stream_options",
                chat.raw(found.span),
                &Value::Object(options.clone()),
            );
            let usage = present(options, "include_usage");
            check_bool("include_usage", &found.include_usage, usage);
            match (options.get("include_usage"), found.include_usage_span) {
                (Some(value), Some(span)) => check_raw("include_usage", chat.raw(span), value),
                (None, None) => {}
                (value, span) => panic!("include_usage {value:?} at {span:?}"),
            }
        }
        Some(other) => assert_eq!(
            chat.stream_options_field(),
            &Field::Invalid(json_type(other)),
            "stream_options"
        ),
    }
    let include_usage = present(object, "stream_options")
        .and_then(|options| options.get("include_usage"))
        .is_some_and(|usage| usage == &Value::Bool(true));
    assert_eq!(chat.include_usage(), include_usage, "include_usage()");

    match present(object, "fallbacks") {
        None => assert_eq!(chat.fallbacks_field(), &Field::Absent, "fallbacks"),
        Some(Value::Array(names)) => {
            let Field::Value(found) = chat.fallbacks_field() else {
                panic!("fallbacks: {:?}", chat.fallbacks_field());
            };
            assert_eq!(found.len(), names.len(), "fallbacks");
            for (found, name) in found.iter().zip(names) {
                match (found, name) {
                    (Field::Value(span), Value::String(name)) => {
                        assert_eq!(chat.text(*span), *name, "fallbacks[]");
                    }
                    (Field::Absent, Value::Null) => {}
                    (found, other) => {
                        assert_eq!(found, &Field::Invalid(json_type(other)), "fallbacks[]");
                    }
                }
            }
        }
        Some(other) => assert_eq!(
            chat.fallbacks_field(),
            &Field::Invalid(json_type(other)),
            "fallbacks"
        ),
    }

    match present(object, "messages") {
        None => assert_eq!(chat.messages_field(), &Field::Absent, "messages"),
        Some(Value::Array(messages)) => {
            let Field::Value(found) = chat.messages_field() else {
                panic!("messages: {:?}", chat.messages_field());
            };
            assert_eq!(found.len(), messages.len(), "messages");
            assert_eq!(chat.message_count(), messages.len(), "message_count()");
            for (found, message) in found.iter().zip(messages) {
                match (found, message) {
                    (Ok(found), Value::Object(message)) => {
                        assert_message_agrees(chat, found, message);
                    }
                    (Err(found), other) => assert_eq!(*found, json_type(other), "messages[]"),
                    (found, other) => panic!("messages[]: {found:?} for {other}"),
                }
            }
        }
        Some(other) => {
            assert_eq!(
                chat.messages_field(),
                &Field::Invalid(json_type(other)),
                "messages"
            );
            assert_eq!(chat.message_count(), 0, "message_count()");
        }
    }

    assert_input_agrees(chat, "input", chat.input_field(), present(object, "input"));
    assert_input_agrees(
        chat,
        "prompt",
        chat.prompt_field(),
        present(object, "prompt"),
    );

    match (present(object, "tools"), chat.tools_span()) {
        (Some(tools), Some(span)) => check_raw("tools", chat.raw(span), tools),
        (None, None) => {}
        (tools, span) => panic!("tools {tools:?} at {span:?}"),
    }
    assert_eq!(
        chat.continues_conversation(),
        present(object, "previous_response_id").is_some()
            || present(object, "conversation").is_some(),
        "continues_conversation()"
    );

    let members: BTreeSet<&str> = chat.members().collect();
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(members, keys, "members()");
    assert_eq!(
        chat.members().count(),
        keys.len(),
        "members() names each once"
    );
    let mut unknown: Vec<&str> = chat.unknown_fields().iter().map(|name| &**name).collect();
    unknown.sort_unstable();
    let expected: Vec<&str> = keys
        .into_iter()
        .filter(|key| !KNOWN_FIELDS.contains(key))
        .collect();
    assert_eq!(unknown, expected, "unknown_fields()");
}

fn assert_message_agrees(chat: &ChatRequest, found: &Message, message: &Map<String, Value>) {
    match (&found.role, present(message, "role")) {
        (Field::Absent, None) => {}
        (Field::Value(span), Some(Value::String(role))) => assert_eq!(chat.text(*span), *role),
        (found, Some(other)) => assert_eq!(found, &Field::Invalid(json_type(other)), "role"),
        (found, None) => panic!("role: {found:?} for none"),
    }
    match (found.name, present(message, "name")) {
        (Some(span), Some(Value::String(name))) => assert_eq!(chat.text(span), *name, "name"),
        // A `name` that is not a string is left to the guard.
        (None, name) if !name.is_some_and(Value::is_string) => {}
        (found, name) => panic!("name: {found:?} for {name:?}"),
    }
    assert_eq!(
        found.has_tool_calls,
        present(message, "tool_calls").is_some() || present(message, "function_call").is_some(),
        "has_tool_calls"
    );
    match (&found.content, present(message, "content")) {
        (Content::Absent, None) => {}
        (Content::Text(span), Some(Value::String(text))) => {
            assert_eq!(chat.text(*span), *text, "content");
        }
        (Content::Parts(parts), Some(Value::Array(items))) => {
            assert_eq!(parts.len(), items.len(), "content parts");
            for (part, item) in parts.iter().zip(items) {
                assert_part_agrees(chat, part, item);
            }
        }
        (Content::Invalid(found), Some(other)) => assert_eq!(*found, json_type(other), "content"),
        (found, content) => panic!("content: {found:?} for {content:?}"),
    }
}

/// A content part as OpenAI reads it: an object with a known string `type`, and a string
/// `text` when it is a text part.
fn assert_part_agrees(chat: &ChatRequest, part: &Part, item: &Value) {
    let Some(object) = item.as_object() else {
        return assert_eq!(
            part,
            &Part::Invalid(InvalidPart::NotAnObject(json_type(item)))
        );
    };
    let kind = match present(object, "type") {
        None => return assert_eq!(part, &Part::Invalid(InvalidPart::Type(None)), "type"),
        Some(Value::String(kind)) => kind,
        Some(other) => {
            return assert_eq!(
                part,
                &Part::Invalid(InvalidPart::Type(Some(json_type(other)))),
                "type"
            );
        }
    };
    if kind != "text" {
        return match part {
            Part::Other => assert!(PART_TYPES.contains(&kind.as_str()), "{kind}"),
            Part::Invalid(InvalidPart::UnknownType(span)) => {
                assert!(!PART_TYPES.contains(&kind.as_str()), "{kind}");
                assert_eq!(chat.text(*span), *kind, "type");
            }
            other => panic!("part {other:?} of type {kind:?}"),
        };
    }
    match (part, present(object, "text")) {
        (Part::Text(span), Some(Value::String(text))) => assert_eq!(chat.text(*span), *text),
        (Part::Invalid(InvalidPart::Text(None)), None) => {}
        (Part::Invalid(InvalidPart::Text(Some(found))), Some(other)) => {
            assert_eq!(*found, json_type(other), "text");
        }
        (part, text) => panic!("part {part:?} for text {text:?}"),
    }
}

fn assert_input_agrees(
    chat: &ChatRequest,
    name: &str,
    found: &Field<Input>,
    value: Option<&Value>,
) {
    let items = match value {
        None => return assert_eq!(found, &Field::Absent, "{name}"),
        Some(Value::String(text)) => {
            let Field::Value(Input::Text(span)) = found else {
                panic!("{name}: {found:?} for a string");
            };
            return assert_eq!(chat.text(*span), *text, "{name}");
        }
        Some(Value::Array(items)) => items,
        Some(other) => return assert_eq!(found, &Field::Invalid(json_type(other)), "{name}"),
    };
    let ids: Option<Vec<bool>> = items.iter().map(token_id).collect();
    let Some(ids) = ids else {
        return; // serde_json's reading cannot tell which items are token ids
    };
    if !items.is_empty() && ids.iter().all(|&id| id) {
        return assert_eq!(found, &Field::Value(Input::Tokens(items.len())), "{name}");
    }
    let Field::Value(Input::Items(found)) = found else {
        panic!("{name}: {found:?} for an array of items");
    };
    assert_eq!(found.len(), items.len(), "{name} items");
    for (found, (item, id)) in found.iter().zip(items.iter().zip(ids)) {
        match (found, item) {
            (InputItem::Text(span), Value::String(text)) => {
                assert_eq!(chat.text(*span), *text, "{name}[]");
            }
            (InputItem::Token, _) => assert!(id, "{name}[]: {item} is not a token id"),
            (InputItem::Object(span), Value::Object(_)) => {
                let read: Value = serde_json::from_str(chat.raw(*span)).expect("an object span");
                assert_eq!(&read, item, "{name}[]");
            }
            (found, Value::Array(tokens)) => {
                let ids: Option<Vec<bool>> = tokens.iter().map(token_id).collect();
                match ids {
                    Some(ids) if ids.iter().all(|&id| id) => {
                        assert_eq!(found, &InputItem::Tokens(ids.len()), "{name}[]");
                    }
                    Some(_) => assert_eq!(found, &InputItem::Other(JsonType::Array), "{name}[]"),
                    None => {}
                }
            }
            (found, item) => {
                assert!(!id, "{name}[]: {found:?} for the token id {item}");
                assert_eq!(found, &InputItem::Other(json_type(item)), "{name}[]");
            }
        }
    }
}
