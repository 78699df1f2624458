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
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
