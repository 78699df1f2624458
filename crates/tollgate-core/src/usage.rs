//! Token usage as OpenAI reports it.

use serde::{Deserialize, Serialize};

/// Token usage of one completion, as in the `usage` object of a response or of the final
/// stream chunk.
///
/// ```
/// use tollgate_core::Usage;
///
/// let body = br#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":18,"total_tokens":48}}"#;
/// assert_eq!(Usage::from_json(body), Some(Usage::new(30, 18)));
/// assert_eq!(Usage::from_json(br#"{"choices":[]}"#), None);
///
/// // Embeddings report only the prompt; the Responses API says input and output.
/// let embeddings = br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
/// assert_eq!(Usage::from_json(embeddings), Some(Usage::new(8, 0)));
/// let response = br#"{"object":"response","usage":{"input_tokens":30,"output_tokens":18,"total_tokens":48}}"#;
/// assert_eq!(Usage::from_json(response), Some(Usage::new(30, 18)));
///
/// // Cached prompt tokens and reasoning tokens, in either shape's details.
/// let chat = br#"{"usage":{"prompt_tokens":30,"completion_tokens":18,"total_tokens":48,
///     "prompt_tokens_details":{"cached_tokens":20},"completion_tokens_details":{"reasoning_tokens":12}}}"#;
/// let response = br#"{"usage":{"input_tokens":30,"output_tokens":18,"total_tokens":48,
///     "input_tokens_details":{"cached_tokens":20},"output_tokens_details":{"reasoning_tokens":12}}}"#;
/// let detailed = Usage::new(30, 18).with_cached_tokens(20).with_reasoning_tokens(12);
/// assert_eq!(Usage::from_json(chat), Some(detailed));
/// assert_eq!(Usage::from_json(response), Some(detailed));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "WireUsage", into = "ChatUsage")]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
    /// Of the prompt tokens, those read from the provider's prompt cache
    /// (`prompt_tokens_details.cached_tokens`, `input_tokens_details.cached_tokens`), as
    /// reported: 0 when the upstream says nothing.
    pub cached_tokens: u64,
    /// Of the completion tokens, those spent reasoning
    /// (`completion_tokens_details.reasoning_tokens`, `output_tokens_details.reasoning_tokens`),
    /// as reported: already counted in `completion_tokens`.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Usage with `total_tokens` computed, and no cached or reasoning tokens.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            cached_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// Sets how many of the prompt tokens were read from the prompt cache.
    ///
    /// ```
    /// use tollgate_core::Usage;
    ///
    /// assert_eq!(Usage::new(100, 10).with_cached_tokens(64).cached_tokens, 64);
    /// ```
    pub fn with_cached_tokens(mut self, cached_tokens: u64) -> Self {
        self.cached_tokens = cached_tokens;
        self
    }

    /// Sets how many of the completion tokens were reasoning.
    ///
    /// ```
    /// use tollgate_core::Usage;
    ///
    /// assert_eq!(Usage::new(100, 10).with_reasoning_tokens(4).reasoning_tokens, 4);
    /// ```
    pub fn with_reasoning_tokens(mut self, reasoning_tokens: u64) -> Self {
        self.reasoning_tokens = reasoning_tokens;
        self
    }

    /// Prompt tokens read from the cache: `cached_tokens`, at most `prompt_tokens` (they are a
    /// part of them, whatever an upstream claims).
    ///
    /// ```
    /// use tollgate_core::Usage;
    ///
    /// assert_eq!(Usage::new(100, 10).with_cached_tokens(64).cached_prompt_tokens(), 64);
    /// assert_eq!(Usage::new(100, 10).with_cached_tokens(500).cached_prompt_tokens(), 100);
    /// ```
    pub fn cached_prompt_tokens(&self) -> u64 {
        self.cached_tokens.min(self.prompt_tokens)
    }

    /// The `usage` object of a chat completion (or of one stream chunk's JSON), when present.
    pub fn from_json(json: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct WithUsage {
            usage: Option<Usage>,
        }
        serde_json::from_slice::<WithUsage>(json).ok()?.usage
    }
}

/// Every shape of `usage` an OpenAI endpoint reports: chat and legacy completions
/// (`prompt_tokens`, `completion_tokens`, their `_details`), embeddings (`prompt_tokens` alone)
/// and the Responses API (`input_tokens`, `output_tokens`, their `_details`).
#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
    // Providers send `null` details, or details without these members.
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    completion_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

#[derive(Deserialize, Serialize)]
struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cached_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reasoning_tokens: Option<u64>,
}

impl TryFrom<WireUsage> for Usage {
    type Error = &'static str;

    fn try_from(wire: WireUsage) -> Result<Usage, &'static str> {
        let prompt = wire
            .prompt_tokens
            .or(wire.input_tokens)
            .ok_or("usage without prompt_tokens or input_tokens")?;
        let completion = wire.completion_tokens.or(wire.output_tokens).unwrap_or(0);
        Ok(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: wire
                .total_tokens
                .unwrap_or(prompt.saturating_add(completion)),
            cached_tokens: detail(
                wire.prompt_tokens_details,
                wire.input_tokens_details,
                |details| details.cached_tokens,
            ),
            reasoning_tokens: detail(
                wire.completion_tokens_details,
                wire.output_tokens_details,
                |details| details.reasoning_tokens,
            ),
        })
    }
}

/// A count from the chat shape's details, else the Responses API's, else 0.
fn detail(
    chat: Option<Details>,
    responses: Option<Details>,
    pick: fn(&Details) -> Option<u64>,
) -> u64 {
    chat.as_ref()
        .and_then(pick)
        .or_else(|| responses.as_ref().and_then(pick))
        .unwrap_or(0)
}

/// `Usage` written back in the chat completions shape, details only when they say something,
/// so that it reads back as the same `Usage`.
#[derive(Serialize)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<Details>,
}

impl From<Usage> for ChatUsage {
    fn from(usage: Usage) -> ChatUsage {
        let details = |cached_tokens: u64, reasoning_tokens: u64| {
            (cached_tokens > 0 || reasoning_tokens > 0).then(|| Details {
                cached_tokens: (cached_tokens > 0).then_some(cached_tokens),
                reasoning_tokens: (reasoning_tokens > 0).then_some(reasoning_tokens),
            })
        };
        ChatUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            prompt_tokens_details: details(usage.cached_tokens, 0),
            completion_tokens_details: details(0, usage.reasoning_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_read_in_either_shape_and_null_or_missing_ones_count_zero() {
        let read = |usage: &str| Usage::from_json(format!(r#"{{"usage":{usage}}}"#).as_bytes());
        assert_eq!(
            read(
                r#"{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":null,"completion_tokens_details":{}}"#
            ),
            Some(Usage::new(9, 3))
        );
        assert_eq!(
            read(
                r#"{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0}}"#
            ),
            Some(Usage::new(9, 3).with_cached_tokens(4))
        );
        assert_eq!(
            read(
                r#"{"input_tokens":9,"output_tokens":3,"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":2}}"#
            ),
            Some(Usage::new(9, 3).with_reasoning_tokens(2))
        );
    }

    #[test]
    fn serializes_in_the_chat_shape_and_reads_back_the_same() {
        for usage in [
            Usage::new(9, 3),
            Usage::new(9, 3).with_cached_tokens(4),
            Usage::new(9, 3).with_reasoning_tokens(2),
            Usage::new(9, 3)
                .with_cached_tokens(4)
                .with_reasoning_tokens(2),
        ] {
            let json = serde_json::to_string(&usage).unwrap();
            assert_eq!(
                serde_json::from_str::<Usage>(&json).unwrap(),
                usage,
                "{json}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Usage::new(9, 3).with_cached_tokens(4)).unwrap(),
            r#"{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":4}}"#
        );
    }
}
