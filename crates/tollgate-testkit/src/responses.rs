//! `POST /v1/responses`: OpenAI's Responses API, as a JSON response object or as its stream of
//! named events.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tollgate_core::ChatRequest;

use crate::answer::{Answer, Rejection, Reply, Tokens};
use crate::behavior::Behavior;
use crate::server::{CREATED, State};
use crate::stream::{EventStream, StreamPlan, named_event};
use crate::tokens::conversation_tokens;

/// The fields of a Responses request the mock reads beyond the shared ones.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

pub(crate) fn answer(
    state: &State,
    request: &ChatRequest,
    behavior: &Behavior,
) -> Result<Answer, Rejection> {
    let fields: Fields<'_> =
        serde_json::from_slice(request.body()).map_err(Rejection::unreadable)?;
    let input_tokens = conversation_tokens(fields.instructions, fields.input)?;
    let budget = fields.max_output_tokens.filter(|&max| max > 0);
    let reply = Reply::new(&state.reply, behavior, budget);
    let id = state.new_id();
    let response = MockResponse {
        id: format!("resp_mock_{id}"),
        message_id: format!("msg_mock_{id}"),
        model: request.model().unwrap_or("mock").to_owned(),
        tokens: Tokens::new(input_tokens, &reply, behavior),
        ending: if reply.cut { "incomplete" } else { "completed" },
        reply,
        sequence_number: 0,
    };
    Ok(if request.stream() {
        Answer::Stream(StreamPlan::new(response, behavior))
    } else {
        Answer::Json(Bytes::from(response.finished().to_string()))
    })
}

struct MockResponse {
    id: String,
    message_id: String,
    model: String,
    reply: Reply,
    tokens: Tokens,
    /// The final status: `completed`, or `incomplete` when `max_output_tokens` cut the reply.
    ending: &'static str,
    /// The next event's `sequence_number`.
    sequence_number: u64,
}

impl MockResponse {
    /// The response object, with `status`, these `output` items and `usage`.
    fn object(&self, status: &str, output: Value, usage: Value) -> Value {
        let incomplete_details = match status {
            "incomplete" => json!({"reason": "max_output_tokens"}),
            _ => Value::Null,
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "error": null,
            "incomplete_details": incomplete_details,
            "model": self.model,
            "output": output,
            "usage": usage,
        })
    }

    /// The assistant message item, with `status` and these `content` parts.
    fn message(&self, status: &str, content: Value) -> Value {
        json!({
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    fn finished_message(&self) -> Value {
        self.message(self.ending, json!([text_part(&self.reply.text())]))
    }

    /// The response object once the reply is written.
    fn finished(&self) -> Value {
        let output = json!([self.finished_message()]);
        self.object(self.ending, output, self.tokens.response_usage())
    }

    /// An event named `name`: `data` with the `type` and the next `sequence_number`.
    fn event(&mut self, name: &str, mut data: Value) -> Bytes {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.sequence_number);
        self.sequence_number += 1;
        named_event(name, &data)
    }

    /// Where the reply's text part is, as every text event says.
    fn text_part_location(&self) -> Value {
        json!({"item_id": self.message_id, "output_index": 0, "content_index": 0})
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// `response.created`, `response.in_progress`, the message item and its text part added, one
/// `response.output_text.delta` per word, then the text, part and item done and
/// `response.completed` (or `response.incomplete`) with the usage. No `[DONE]`.
impl EventStream for MockResponse {
    fn chunk_count(&self) -> usize {
        self.reply.words.len()
    }

    fn opening(&mut self) -> Vec<Bytes> {
        let in_progress = self.object("in_progress", json!([]), Value::Null);
        let item = self.message("in_progress", json!([]));
        let mut part_added = self.text_part_location();
        part_added["part"] = text_part("");
        vec![
            self.event("response.created", json!({"response": in_progress})),
            self.event("response.in_progress", json!({"response": in_progress})),
            self.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ),
            self.event("response.content_part.added", part_added),
        ]
    }

    fn chunk(&mut self, index: usize) -> Bytes {
        let mut delta = self.text_part_location();
        delta["delta"] = json!(self.reply.words[index]);
        delta["logprobs"] = json!([]);
        self.event("response.output_text.delta", delta)
    }

    fn closing(&mut self) -> Vec<Bytes> {
        let text = self.reply.text();
        let mut text_done = self.text_part_location();
        text_done["text"] = json!(text);
        text_done["logprobs"] = json!([]);
        let mut part_done = self.text_part_location();
        part_done["part"] = text_part(&text);
        let item_done = json!({"output_index": 0, "item": self.finished_message()});
        let finished = json!({"response": self.finished()});
        let last = format!("response.{}", self.ending);
        vec![
            self.event("response.output_text.done", text_done),
            self.event("response.content_part.done", part_done),
            self.event("response.output_item.done", item_done),
            self.event(&last, finished),
        ]
    }

    fn error(&mut self, message: &str) -> Bytes {
        let error = json!({"code": "server_error", "message": message, "param": null});
        self.event("error", error)
    }
}
