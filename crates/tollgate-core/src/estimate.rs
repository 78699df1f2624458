//! The tokens a request may use, as every layer that counts before the upstream answers
//! counts them.

use http::Extensions;

use crate::chat::Input;
use crate::{ChatRequest, Endpoint, Field, ModelInfo, PromptTokens};

/// OpenAI's `max_tokens` default on `/v1/completions`.
const LEGACY_COMPLETION_DEFAULT: u64 = 16;

/// The most tokens a request may use, known before the upstream answers: what the rate
/// limiter charges against token quotas and what the balance gate reserves money for.
///
/// - `prompt`: the guard's [`PromptTokens`] (exact, or its byte bound), else the byte bound of
///   the parsed body's text, else 0 (no body was parsed).
/// - `completion`: the request's own budget (`max_completion_tokens`, else
///   `max_output_tokens`, else `max_tokens`), else the resolved model's max output, else 0: with
///   neither, nothing bounds the completion before it happens, and settlement charges what it
///   really used. By the routed [`Endpoint`]: 0 for embeddings (they generate nothing), and 16
///   for legacy completions without `max_tokens` (OpenAI's default). The budget is per choice,
///   so it is multiplied by `n` (an absent, zero or non-integer `n` counts 1; the product
///   saturates): `n: 3` may generate three completions of `max_tokens` each. Legacy
///   completions generate `best_of` candidates when it is larger than `n`, for each prompt of
///   a batch (`prompt` as an array of strings or of token arrays).
///
/// ```
/// use bytes::Bytes;
/// use http::Extensions;
/// use tollgate_core::{ChatRequest, Endpoint, ModelInfo, PromptTokens, TokenEstimate};
///
/// let mut extensions = Extensions::new();
/// extensions.insert(ChatRequest::parse(Bytes::from_static(br#"{"max_tokens":100}"#)).unwrap());
/// extensions.insert(PromptTokens::Exact(12));
/// assert_eq!(TokenEstimate::of(&extensions), TokenEstimate { prompt: 12, completion: 100 });
///
/// let mut extensions = Extensions::new();
/// extensions.insert(ChatRequest::parse(Bytes::from_static(br#"{"max_tokens":100,"n":3}"#)).unwrap());
/// extensions.insert(PromptTokens::Exact(12));
/// assert_eq!(TokenEstimate::of(&extensions), TokenEstimate { prompt: 12, completion: 300 });
///
/// let mut extensions = Extensions::new();
/// extensions.insert(ChatRequest::parse(Bytes::from_static(b"{}")).unwrap());
/// extensions.insert(ModelInfo::new("m", 8_192, 1_024));
/// assert_eq!(TokenEstimate::of(&extensions).total(), 1_024);
///
/// let mut extensions = Extensions::new();
/// extensions.insert(ChatRequest::parse(Bytes::from_static(br#"{"prompt":["a","b"],"max_tokens":10,"best_of":3}"#)).unwrap());
/// extensions.insert(Endpoint::Completions);
/// assert_eq!(TokenEstimate::of(&extensions).completion, 60);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenEstimate {
    /// Prompt tokens, at most.
    pub prompt: u64,
    /// Completion tokens, at most.
    pub completion: u64,
}

impl TokenEstimate {
    /// The estimate from what earlier layers left in the request extensions.
    pub fn of(extensions: &Extensions) -> Self {
        let chat = extensions.get::<ChatRequest>();
        let model = extensions.get::<ModelInfo>();
        let prompt = match extensions.get::<PromptTokens>() {
            Some(tokens) => tokens.value(),
            None => chat.map_or(0, |chat| chat.prompt_bytes() as u64),
        };
        let requested = chat.and_then(ChatRequest::max_completion_tokens);
        let endpoint = extensions.get::<Endpoint>().copied();
        let budget = match endpoint {
            // An embedding generates nothing.
            Some(Endpoint::Embeddings) => Some(0),
            // Legacy completions stop at 16 tokens unless told otherwise, as OpenAI's do.
            Some(Endpoint::Completions) => requested.or(Some(LEGACY_COMPLETION_DEFAULT)),
            _ => requested.or(model.map(|model| model.max_output_tokens)),
        };
        let choices = chat.map_or(1, |chat| choices(chat, endpoint));
        let completion = budget.unwrap_or(0).saturating_mul(choices);
        TokenEstimate { prompt, completion }
    }

    /// Prompt and completion together.
    pub fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// How many completions the request may generate: `n` when a positive integer, else the one an
/// upstream generates by default; on legacy completions, `best_of` when larger, for each prompt.
fn choices(chat: &ChatRequest, endpoint: Option<Endpoint>) -> u64 {
    let positive = |field: &Field<serde_json::Number>| {
        field.value().and_then(|n| n.as_u64()).filter(|&n| n > 0)
    };
    let n = positive(chat.n_field()).unwrap_or(1);
    if endpoint != Some(Endpoint::Completions) {
        return n;
    }
    let best_of = positive(chat.best_of_field()).unwrap_or(1);
    let prompts = match chat.prompt_field() {
        Field::Value(Input::Items(prompts)) => prompts.len().max(1) as u64,
        _ => 1,
    };
    n.max(best_of).saturating_mul(prompts)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn completion(body: &'static str) -> u64 {
        let mut extensions = Extensions::new();
        extensions.insert(ChatRequest::parse(Bytes::from_static(body.as_bytes())).unwrap());
        extensions.insert(ModelInfo::new("m", 8_192, 1_024));
        TokenEstimate::of(&extensions).completion
    }

    #[test]
    fn each_endpoint_has_its_completion_budget() {
        let budget = |endpoint: Option<Endpoint>, body: &'static str| {
            let mut extensions = Extensions::new();
            extensions.insert(ChatRequest::parse(Bytes::from_static(body.as_bytes())).unwrap());
            extensions.insert(ModelInfo::new("m", 8_192, 1_024));
            if let Some(endpoint) = endpoint {
                extensions.insert(endpoint);
            }
            TokenEstimate::of(&extensions).completion
        };
        assert_eq!(budget(Some(Endpoint::Embeddings), r#"{"input":"a"}"#), 0);
        assert_eq!(budget(Some(Endpoint::Completions), r#"{"prompt":"a"}"#), 16);
        assert_eq!(
            budget(
                Some(Endpoint::Completions),
                r#"{"prompt":"a","max_tokens":50}"#
            ),
            50
        );
        assert_eq!(
            budget(
                Some(Endpoint::Responses),
                r#"{"input":"a","max_output_tokens":64}"#
            ),
            64
        );
        assert_eq!(budget(Some(Endpoint::Responses), r#"{"input":"a"}"#), 1_024);
        assert_eq!(
            budget(Some(Endpoint::ChatCompletions), r#"{"messages":[]}"#),
            1_024
        );
        assert_eq!(
            budget(None, r#"{"max_tokens":10}"#),
            10,
            "without routing: as chat"
        );
    }

    #[test]
    fn legacy_completions_reserve_best_of_candidates_for_each_prompt() {
        let budget = |endpoint: Endpoint, body: &'static str| {
            let mut extensions = Extensions::new();
            extensions.insert(ChatRequest::parse(Bytes::from_static(body.as_bytes())).unwrap());
            extensions.insert(endpoint);
            TokenEstimate::of(&extensions).completion
        };
        let completions = Endpoint::Completions;
        assert_eq!(budget(completions, r#"{"prompt":"a","max_tokens":10}"#), 10);
        assert_eq!(
            budget(completions, r#"{"prompt":[1,2,3],"max_tokens":10}"#),
            10,
            "one prompt of token ids"
        );
        assert_eq!(
            budget(completions, r#"{"prompt":["a","b","c"],"max_tokens":10}"#),
            30
        );
        assert_eq!(
            budget(completions, r#"{"prompt":[[1],[2]],"max_tokens":10,"n":2}"#),
            40
        );
        assert_eq!(
            budget(
                completions,
                r#"{"prompt":"a","max_tokens":10,"n":2,"best_of":5}"#
            ),
            50
        );
        assert_eq!(
            budget(
                completions,
                r#"{"prompt":"a","max_tokens":10,"n":3,"best_of":2}"#
            ),
            30,
            "n when larger"
        );
        assert_eq!(
            budget(
                Endpoint::ChatCompletions,
                r#"{"messages":[],"max_tokens":10,"best_of":5}"#
            ),
            10,
            "best_of is legacy completions' only"
        );
    }

    #[test]
    fn n_multiplies_the_completion_budget_and_an_unusable_n_counts_one() {
        assert_eq!(completion(r#"{"max_tokens":100,"n":3}"#), 300);
        assert_eq!(
            completion(r#"{"n":2}"#),
            2_048,
            "the model's max output, per choice"
        );
        for one in [
            r#"{"max_tokens":100}"#,
            r#"{"max_tokens":100,"n":null}"#,
            r#"{"max_tokens":100,"n":0}"#,
            r#"{"max_tokens":100,"n":-2}"#,
            r#"{"max_tokens":100,"n":2.5}"#,
            r#"{"max_tokens":100,"n":"3"}"#,
        ] {
            assert_eq!(completion(one), 100, "{one}");
        }
        assert_eq!(
            completion(r#"{"max_tokens":18446744073709551615,"n":2}"#),
            u64::MAX,
            "saturates"
        );
    }
}
