//! `POST /v1/chat/completions` and the legacy `POST /v1/completions`: one completion, as JSON
//! or as an SSE stream of chunks, in the chat shape or the text shape.

use bytes::Bytes;
use serde_json::{Value, json};
use tollgate_core::ChatRequest;

use crate::answer::{Answer, Reply, Tokens};
use crate::behavior::Behavior;
use crate::server::{CREATED, State};
use crate::stream::{DONE, EventStream, StreamPlan, data_event};
use crate::tokens::prompt_tokens;

pub(crate) fn answer(state: &State, chat: &ChatRequest, behavior: &Behavior) -> Answer {
    Completion::new(Shape::Chat, state, chat, prompt_tokens(chat), behavior).answer(chat, behavior)
}

/// Which API's objects a completion is written as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `chat.completion` with a message, `chat.completion.chunk` with deltas.
    Chat,
    /// `text_completion` with text, for JSON and chunks alike.
    Text,
}

/// One completion with a single choice (whatever `n` or the number of prompts).
pub(crate) struct Completion {
    shape: Shape,
    id: String,
    model: String,
    reply: Reply,
    finish_reason: &'static str,
    tokens: Tokens,
    include_usage: bool,
}

impl Completion {
    pub(crate) fn new(
        shape: Shape,
        state: &State,
        request: &ChatRequest,
        prompt_tokens: u64,
        behavior: &Behavior,
    ) -> Self {
        let reply = Reply::new(&state.reply, behavior, request.max_completion_tokens());
        let prefix = match shape {
            Shape::Chat => "chatcmpl-mock",
            Shape::Text => "cmpl-mock",
        };
        Completion {
            shape,
            id: format!("{prefix}-{}", state.new_id()),
            model: request.model().unwrap_or("mock").to_owned(),
            tokens: Tokens::new(prompt_tokens, &reply, behavior),
            finish_reason: if reply.cut { "length" } else { "stop" },
            reply,
            include_usage: request.include_usage(),
        }
    }

    /// The JSON answer, or the stream when the request asked for one.
    pub(crate) fn answer(self, request: &ChatRequest, behavior: &Behavior) -> Answer {
        if request.stream() {
            Answer::Stream(StreamPlan::new(self, behavior))
        } else {
            Answer::Json(self.json())
        }
    }

    fn json(&self) -> Bytes {
        let (object, choice) = match self.shape {
            Shape::Chat => (
                "chat.completion",
                json!({
                    "index": 0,
                    "message": {"role": "assistant", "content": self.reply.text()},
                    "finish_reason": self.finish_reason,
                }),
            ),
            Shape::Text => (
                "text_completion",
                json!({
                    "text": self.reply.text(),
                    "index": 0,
                    "logprobs": null,
                    "finish_reason": self.finish_reason,
                }),
            ),
        };
        let body = json!({
            "id": self.id,
            "object": object,
            "created": CREATED,
            "model": self.model,
            "choices": [choice],
            "usage": self.tokens.completion_usage(),
        });
        Bytes::from(body.to_string())
    }

    /// A chunk carrying `text` (or, for chat, `delta` when given), finished or not.
    fn chunk_event(&self, text: &str, delta: Option<Value>, finish_reason: Option<&str>) -> Bytes {
        let choice = match self.shape {
            Shape::Chat => json!({
                "index": 0,
                "delta": delta.unwrap_or_else(|| json!({"content": text})),
                "finish_reason": finish_reason,
            }),
            Shape::Text => json!({
                "text": text,
                "index": 0,
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
        };
        let mut chunk = self.chunk_object(json!([choice]));
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        data_event(&chunk)
    }

    fn chunk_object(&self, choices: Value) -> Value {
        let object = match self.shape {
            Shape::Chat => "chat.completion.chunk",
            Shape::Text => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": CREATED,
            "model": self.model,
            "choices": choices,
        })
    }
}

/// The role chunk (chat only), one chunk per word, the finish chunk, the usage chunk when asked
/// for, and `data: [DONE]`.
impl EventStream for Completion {
    fn chunk_count(&self) -> usize {
        self.reply.words.len()
    }

    fn opening(&mut self) -> Vec<Bytes> {
        match self.shape {
            Shape::Chat => {
                vec![self.chunk_event("", Some(json!({"role": "assistant", "content": ""})), None)]
            }
            Shape::Text => Vec::new(),
        }
    }

    fn chunk(&mut self, index: usize) -> Bytes {
        self.chunk_event(&self.reply.words[index], None, None)
    }

    fn closing(&mut self) -> Vec<Bytes> {
        let mut events = vec![self.chunk_event("", Some(json!({})), Some(self.finish_reason))];
        if self.include_usage {
            let mut usage_chunk = self.chunk_object(json!([]));
            usage_chunk["usage"] = self.tokens.completion_usage();
            events.push(data_event(&usage_chunk));
        }
        events.push(DONE);
        events
    }

    fn error(&mut self, message: &str) -> Bytes {
        // As OpenAI reports a failure in a chat or legacy completions stream: an `error` event
        // in place of the next chunk, and no `[DONE]`.
        data_event(&json!({
            "error": {"message": message, "type": "server_error", "param": null, "code": null}
        }))
    }
}
