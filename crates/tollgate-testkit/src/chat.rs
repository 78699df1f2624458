//! `POST /v1/chat/completions`: a chat completion, as JSON or as an SSE stream of chunks.

use bytes::Bytes;
use serde_json::{Value, json};
use tollgate_core::ChatRequest;

use crate::answer::{Answer, Reply, Tokens};
use crate::behavior::Behavior;
use crate::server::{CREATED, State};
use crate::stream::{DONE, EventStream, StreamPlan, data_event};
use crate::tokens::prompt_tokens;

pub(crate) fn answer(state: &State, chat: &ChatRequest, behavior: &Behavior) -> Answer {
    let reply = Reply::new(&state.reply, behavior, chat.max_completion_tokens());
    let completion = Completion {
        id: format!("chatcmpl-mock-{}", state.new_id()),
        model: chat.model().unwrap_or("mock").to_owned(),
        tokens: Tokens::new(prompt_tokens(chat), &reply, behavior),
        finish_reason: if reply.cut { "length" } else { "stop" },
        reply,
        include_usage: chat.include_usage(),
    };
    if chat.stream() {
        Answer::Stream(StreamPlan::new(completion, behavior))
    } else {
        Answer::Json(completion.json())
    }
}

struct Completion {
    id: String,
    model: String,
    reply: Reply,
    finish_reason: &'static str,
    tokens: Tokens,
    include_usage: bool,
}

impl Completion {
    fn json(&self) -> Bytes {
        let body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.reply.text()},
                "finish_reason": self.finish_reason,
            }],
            "usage": self.tokens.completion_usage(),
        });
        Bytes::from(body.to_string())
    }

    /// A `chat.completion.chunk` event with this delta.
    fn delta_event(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        data_event(&chunk)
    }
}

/// The role chunk, one chunk per word, the finish chunk, the usage chunk when asked for, and
/// `data: [DONE]`.
impl EventStream for Completion {
    fn chunk_count(&self) -> usize {
        self.reply.words.len()
    }

    fn opening(&mut self) -> Vec<Bytes> {
        vec![self.delta_event(json!({"role": "assistant", "content": ""}), None)]
    }

    fn chunk(&mut self, index: usize) -> Bytes {
        self.delta_event(json!({"content": self.reply.words[index]}), None)
    }

    fn closing(&mut self) -> Vec<Bytes> {
        let mut events = vec![self.delta_event(json!({}), Some(self.finish_reason))];
        if self.include_usage {
            let usage_chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
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

/// How OpenAI reports a failure in a chat or legacy completions stream: an `error` event in
/// place of the next chunk, and no `[DONE]`.
pub(crate) fn stream_error(message: &str) -> Bytes {
    data_event(&json!({
        "error": {"message": message, "type": "server_error", "param": null, "code": null}
    }))
}
