//! `POST /v1/completions`: a legacy text completion, as JSON or as an SSE stream of chunks.

use serde::Deserialize;
use serde_json::value::RawValue;
use tollgate_core::ChatRequest;

use crate::answer::{Answer, Rejection};
use crate::behavior::Behavior;
use crate::chat::{Completion, Shape};
use crate::server::State;
use crate::tokens::texts;

/// The field of a legacy completions request the mock reads beyond the shared ones.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
}

pub(crate) fn answer(
    state: &State,
    request: &ChatRequest,
    behavior: &Behavior,
) -> Result<Answer, Rejection> {
    let fields: Fields<'_> =
        serde_json::from_slice(request.body()).map_err(Rejection::unreadable)?;
    let prompt_tokens = match fields.prompt {
        Some(prompt) => texts("prompt", prompt)?
            .iter()
            .map(|text| text.tokens)
            .sum(),
        None => 0,
    };
    let completion = Completion::new(Shape::Text, state, request, prompt_tokens, behavior);
    Ok(completion.answer(request, behavior))
}
