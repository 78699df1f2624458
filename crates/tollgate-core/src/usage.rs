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
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "WireUsage")]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage with `total_tokens` computed.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
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
/// (`prompt_tokens`, `completion_tokens`), embeddings (`prompt_tokens` alone) and the Responses
/// API (`input_tokens`, `output_tokens`).
#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    total_tokens: Option<u64>,
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
        })
    }
}
