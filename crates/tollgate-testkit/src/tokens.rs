//! How the mock counts input tokens: simple rules a test can predict, not a tokenizer.
//!
//! Text counts a quarter of its bytes as written in the JSON (escapes included, as in
//! [`ChatRequest::prompt_bytes`]), rounded up.

use serde::Deserialize;
use serde_json::value::RawValue;
use tollgate_core::ChatRequest;

use crate::answer::Rejection;

/// OpenAI's overhead per chat message, in tokens.
const TOKENS_PER_MESSAGE: u64 = 3;

/// The mock's token count: a quarter of the message text bytes, rounded up, plus 3 per
/// message (OpenAI's per-message overhead). Deterministic, so tests can predict it.
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::ChatRequest;
///
/// let body = br#"{"messages":[{"role":"user","content":"Say hello to the test suite"}]}"#;
/// let chat = ChatRequest::parse(Bytes::from_static(body)).unwrap();
/// // 27 bytes of text -> 7 tokens, + 3 for the one message.
/// assert_eq!(tollgate_testkit::prompt_tokens(&chat), 10);
/// ```
pub fn prompt_tokens(chat: &ChatRequest) -> u64 {
    text_tokens(chat.prompt_bytes()) + TOKENS_PER_MESSAGE * chat.message_count() as u64
}

fn text_tokens(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

/// The bytes between the quotes of a JSON string, or `None` when `raw` is not a string.
fn string_bytes(raw: &RawValue) -> Option<usize> {
    let json = raw.get();
    json.starts_with('"').then(|| json.len() - 2)
}

/// The input tokens of a Responses request, counted like [`prompt_tokens`] counts a chat's
/// messages: `instructions` and a string `input` are one message each, an `input` array one
/// message per item, whose text is its `content` (a string, or the `text` of its parts).
pub(crate) fn conversation_tokens(
    instructions: Option<&RawValue>,
    input: Option<&RawValue>,
) -> Result<u64, Rejection> {
    let mut bytes = 0;
    let mut messages = 0;
    for (field, raw) in [("instructions", instructions), ("input", input)] {
        let Some(raw) = raw else { continue };
        if let Some(text) = string_bytes(raw) {
            bytes += text;
            messages += 1;
            continue;
        }
        let items: Vec<Item<'_>> = serde_json::from_str(raw.get())
            .map_err(|_| Rejection::invalid_type(field, "a string or an array of input items"))?;
        bytes += items.iter().map(Item::text_bytes).sum::<usize>();
        messages += items.len();
    }
    Ok(text_tokens(bytes) + TOKENS_PER_MESSAGE * messages as u64)
}

/// One input item of a Responses request; only its text counts.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ContentPart<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

impl Item<'_> {
    fn text_bytes(&self) -> usize {
        let Some(content) = self.content else {
            return 0;
        };
        string_bytes(content).unwrap_or_else(|| {
            // Parts that are not text (an image, a file) are counted as nothing, as in chat.
            serde_json::from_str::<Vec<ContentPart<'_>>>(content.get()).map_or(0, |parts| {
                parts
                    .iter()
                    .filter_map(|part| part.text)
                    .filter_map(string_bytes)
                    .sum()
            })
        })
    }
}

/// One text of an embeddings `input` or a legacy completions `prompt`: a string or token ids.
pub(crate) struct Text<'a> {
    /// The text's JSON, from which an embedding is derived.
    pub(crate) json: &'a str,
    /// A string's tokens (a quarter of its bytes, rounded up), or the number of token ids.
    pub(crate) tokens: u64,
}

/// The texts of `raw`, an embeddings `input` or a completions `prompt` named `field`: a
/// string, an array of strings, an array of token ids, or an array of token-id arrays.
pub(crate) fn texts<'a>(field: &str, raw: &'a RawValue) -> Result<Vec<Text<'a>>, Rejection> {
    let invalid = || {
        Rejection::invalid_type(
            field,
            "a string, an array of strings, an array of token ids, or an array of token-id arrays",
        )
    };
    if let Some(bytes) = string_bytes(raw) {
        return Ok(vec![Text {
            json: raw.get(),
            tokens: text_tokens(bytes),
        }]);
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| invalid())?;
    let token_ids = |raw: &RawValue| serde_json::from_str::<Vec<u64>>(raw.get()).ok();
    match items.first().and_then(|item| item.get().bytes().next()) {
        None => Ok(Vec::new()),
        Some(b'"') => items
            .iter()
            .map(|item| {
                let bytes = string_bytes(item).ok_or_else(invalid)?;
                Ok(Text {
                    json: item.get(),
                    tokens: text_tokens(bytes),
                })
            })
            .collect(),
        Some(b'[') => items
            .iter()
            .map(|item| {
                let ids = token_ids(item).ok_or_else(invalid)?;
                Ok(Text {
                    json: item.get(),
                    tokens: ids.len() as u64,
                })
            })
            .collect(),
        Some(_) => {
            let ids = token_ids(raw).ok_or_else(invalid)?;
            Ok(vec![Text {
                json: raw.get(),
                tokens: ids.len() as u64,
            }])
        }
    }
}
