//! What an endpoint answers, and the parts every completion endpoint shares: the reply's
//! words and the token counts of its usage.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::behavior::Behavior;
use crate::stream::StreamPlan;

/// A successful answer.
pub(crate) enum Answer {
    /// A JSON body.
    Json(Bytes),
    /// A server-sent event stream.
    Stream(StreamPlan),
}

/// A request the mock refuses, answered with an OpenAI-style error body.
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Rejection {
    pub(crate) fn bad_request(message: impl Into<String>) -> Rejection {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A body whose fields do not have the types the endpoint reads.
    pub(crate) fn unreadable(error: serde_json::Error) -> Rejection {
        Rejection::bad_request(format!(
            "We could not parse the JSON body of your request: {error}."
        ))
    }

    /// A field that is none of the types OpenAI accepts for it.
    pub(crate) fn invalid_type(field: &str, expected: &str) -> Rejection {
        Rejection::bad_request(format!("Invalid type for '{field}': expected {expected}."))
    }
}

/// The reply to one request: the configured reply's words, repeated to fill the chunks asked
/// for, then cut to the request's token budget (one token per word).
pub(crate) struct Reply {
    pub(crate) words: Vec<String>,
    /// Whether the budget cut the reply short.
    pub(crate) cut: bool,
}

impl Reply {
    pub(crate) fn new(reply: &str, behavior: &Behavior, budget: Option<u64>) -> Reply {
        let reply_words: Vec<&str> = reply.split_inclusive(' ').collect();
        let wanted = behavior.chunks.unwrap_or(reply_words.len());
        let allowed = budget.map_or(wanted, |budget| {
            wanted.min(usize::try_from(budget).unwrap_or(usize::MAX))
        });
        let words = reply_words
            .iter()
            .cycle()
            .take(allowed)
            .map(|word| (*word).to_owned())
            .collect();
        Reply {
            words,
            cut: allowed < wanted,
        }
    }

    pub(crate) fn text(&self) -> String {
        self.words.concat()
    }
}

/// The token counts an answer reports.
pub(crate) struct Tokens {
    pub(crate) input: u64,
    /// The reply's words and the reasoning tokens.
    pub(crate) output: u64,
    /// Input tokens read from the prompt cache, at most `input`.
    pub(crate) cached: u64,
    pub(crate) reasoning: u64,
    /// Whether the behavior asked for cached or reasoning tokens: chat and legacy completions
    /// report the details only then, so their usage stays the three classic numbers otherwise.
    detailed: bool,
}

impl Tokens {
    pub(crate) fn new(input: u64, reply: &Reply, behavior: &Behavior) -> Tokens {
        let reasoning = behavior.reasoning_tokens.unwrap_or(0);
        Tokens {
            input,
            output: reply.words.len() as u64 + reasoning,
            cached: behavior.cached_tokens.unwrap_or(0).min(input),
            reasoning,
            detailed: behavior.cached_tokens.is_some() || behavior.reasoning_tokens.is_some(),
        }
    }

    /// `usage` as chat and legacy completions report it.
    pub(crate) fn completion_usage(&self) -> Value {
        let mut usage = json!({
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.input + self.output,
        });
        if self.detailed {
            usage["prompt_tokens_details"] = json!({"cached_tokens": self.cached});
            usage["completion_tokens_details"] = json!({"reasoning_tokens": self.reasoning});
        }
        usage
    }

    /// `usage` as the Responses API reports it.
    pub(crate) fn response_usage(&self) -> Value {
        json!({
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input + self.output,
        })
    }
}
