//! `POST /v1/completions`: a legacy text completion, as JSON or as an SSE stream of chunks.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tollgate_core::ChatRequest;

use crate::answer::{Answer, Rejection, Reply, Tokens};
use crate::behavior::Behavior;
use crate::chat::stream_error;
use crate::server::{CREATED, State};
use crate::stream::{DONE, EventStream, StreamPlan, data_event};
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
    let reply = Reply::new(&state.reply, behavior, request.max_completion_tokens());
    let completion = TextCompletion {
        id: format!("cmpl-mock-{}", state.new_id()),
        model: request.model().unwrap_or("mock").to_owned(),
        tokens: Tokens::new(prompt_tokens, &reply, behavior),
        finish_reason: if reply.cut { "length" } else { "stop" },
        reply,
        include_usage: request.include_usage(),
    };
    Ok(if request.stream() {
        Answer::Stream(StreamPlan::new(completion, behavior))
    } else {
        Answer::Json(completion.json())
    })
}

/// One completion, a single choice whatever the number of prompts.
struct TextCompletion {
    id: String,
    model: String,
    reply: Reply,
    finish_reason: &'static str,
    tokens: Tokens,
    include_usage: bool,
}

impl TextCompletion {
    fn json(&self) -> Bytes {
        let body = json!({
            "id": self.id,
            "object": "text_completion",
            "created": CREATED,
            "model": self.model,
            "choices": [{
                "text": self.reply.text(),
                "index": 0,
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
            "usage": self.tokens.completion_usage(),
        });
        Bytes::from(body.to_string())
    }

    /// A chunk: the same object as the JSON answer, with these `choices`.
    fn chunk_event(&self, choices: Value) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "text_completion",
            "created": CREATED,
            "model": self.model,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        data_event(&chunk)
    }
}

/// One chunk per word, the finish chunk, the usage chunk when asked for, and `data: [DONE]`.
impl EventStream for TextCompletion {
    fn chunk_count(&self) -> usize {
        self.reply.words.len()
    }

    fn opening(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn chunk(&mut self, index: usize) -> Bytes {
        let text = &self.reply.words[index];
        self.chunk_event(
            json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": null}]),
        )
    }

    fn closing(&mut self) -> Vec<Bytes> {
        let finish = json!([{"text": "", "index": 0, "logprobs": null, "finish_reason": self.finish_reason}]);
        let mut events = vec![self.chunk_event(finish)];
        if self.include_usage {
            let usage_chunk = json!({
                "id": self.id,
                "object": "text_completion",
                "created": CREATED,
                "model": self.model,
                "choices": [],
                "usage": self.tokens.completion_usage(),
            });
            events.push(data_event(&usage_chunk));
        }
        events.push(DONE);
        events
    }

    fn error(&mut self, message: &str) -> Bytes {
        stream_error(message)
    }
}
