//! The completions the mock produces, as JSON and as an SSE stream.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use serde_json::json;
use tokio::time::Sleep;
use tollgate_core::Usage;

use crate::record::{HangUpGuard, Outcome};

/// The fixed `created` timestamp, so recorded responses are reproducible.
const CREATED: u64 = 1_714_000_000;

/// One completion: the words of the reply, and what the request asked for.
pub(crate) struct Completion {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) words: Vec<String>,
    pub(crate) finish_reason: &'static str,
    pub(crate) usage: Usage,
    pub(crate) include_usage: bool,
}

impl Completion {
    pub(crate) fn json(&self) -> Bytes {
        let body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.words.concat()},
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage,
        });
        Bytes::from(body.to_string())
    }

    fn chunk(&self, delta: serde_json::Value, finish_reason: Option<&str>) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            chunk["usage"] = serde_json::Value::Null;
        }
        event(&chunk)
    }

    /// The frames of the stream, each with the pause before it: the role chunk, one chunk per
    /// word, the finish chunk, the usage chunk when asked for, and `data: [DONE]`.
    pub(crate) fn sse_frames(&self, chunk_delay: Duration) -> Vec<(Duration, Bytes)> {
        let mut frames = vec![(
            Duration::ZERO,
            self.chunk(json!({"role": "assistant", "content": ""}), None),
        )];
        for word in &self.words {
            frames.push((chunk_delay, self.chunk(json!({"content": word}), None)));
        }
        frames.push((
            Duration::ZERO,
            self.chunk(json!({}), Some(self.finish_reason)),
        ));
        if self.include_usage {
            let usage_chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": self.model,
                "choices": [],
                "usage": self.usage,
            });
            frames.push((Duration::ZERO, event(&usage_chunk)));
        }
        frames.push((Duration::ZERO, Bytes::from_static(b"data: [DONE]\n\n")));
        frames
    }
}

fn event(data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// An SSE body that hands each frame to the connection after its pause, records when, and
/// notices the client going away (the body is dropped before its end).
pub(crate) struct MockStream {
    frames: std::vec::IntoIter<(Duration, Bytes)>,
    /// After this many frames, fail the body: the connection is aborted mid-stream.
    abort_after_frames: Option<usize>,
    sent: usize,
    pending: Option<(Pin<Box<Sleep>>, Bytes)>,
    abort_pause: Option<Pin<Box<Sleep>>>,
    guard: HangUpGuard,
}

/// How long an aborting stream waits, with its frames flushed, before it cuts the connection.
const ABORT_PAUSE: Duration = Duration::from_millis(20);

impl MockStream {
    pub(crate) fn new(
        frames: Vec<(Duration, Bytes)>,
        abort_after_frames: Option<usize>,
        guard: HangUpGuard,
    ) -> Self {
        MockStream {
            frames: frames.into_iter(),
            abort_after_frames,
            sent: 0,
            pending: None,
            abort_pause: None,
            guard,
        }
    }
}

impl http_body::Body for MockStream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.abort_after_frames == Some(this.sent) {
            // Pause first: hyper flushes what it holds when the body is pending, so the client
            // really receives the head and the chunks before the connection is cut.
            let pause = this
                .abort_pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(ABORT_PAUSE)));
            std::task::ready!(pause.as_mut().poll(cx));
            this.guard.0.finish(Outcome::Faulted);
            return Poll::Ready(Some(Err(std::io::Error::other(
                "mock upstream aborted the stream",
            ))));
        }
        if this.pending.is_none() {
            let Some((delay, frame)) = this.frames.next() else {
                this.guard.0.finish(Outcome::Completed);
                return Poll::Ready(None);
            };
            if delay.is_zero() {
                return Poll::Ready(Some(Ok(this.send(frame))));
            }
            this.pending = Some((Box::pin(tokio::time::sleep(delay)), frame));
        }
        if let Some((sleep, _)) = &mut this.pending {
            std::task::ready!(sleep.as_mut().poll(cx));
        }
        let (_, frame) = this.pending.take().expect("a pending frame");
        Poll::Ready(Some(Ok(this.send(frame))))
    }
}

impl MockStream {
    fn send(&mut self, frame: Bytes) -> Frame<Bytes> {
        self.sent += 1;
        self.guard.0.frame_sent();
        Frame::data(frame)
    }
}
