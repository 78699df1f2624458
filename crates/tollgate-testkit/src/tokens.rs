//! How the mock counts input tokens: simple rules a test can predict, not a tokenizer.
//!
//! Text counts a quarter of its bytes as written in the JSON (escapes included, as in
//! [`ChatRequest::prompt_bytes`]), rounded up.

use tollgate_core::ChatRequest;

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
