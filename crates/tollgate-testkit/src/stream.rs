//! Answers sent as server-sent events: what each endpoint's events are, how faults cut them,
//! and the body that sends them with their pauses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::Sleep;

use crate::behavior::{Behavior, Fault};
use crate::record::{HangUpGuard, Outcome};
use crate::server::MockBody;

/// An answer as a stream of events around its content chunks. Implementations number their
/// events if the format asks for it, so each method is called once per event, in stream order.
pub(crate) trait EventStream {
    /// How many content chunks the answer has.
    fn chunk_count(&self) -> usize;
    /// The events before the first content chunk.
    fn opening(&mut self) -> Vec<Bytes>;
    /// The event carrying content chunk `index`.
    fn chunk(&mut self, index: usize) -> Bytes;
    /// The events after the last content chunk, through the end of the stream.
    fn closing(&mut self) -> Vec<Bytes>;
    /// The event reporting a failure mid-stream, the last of the stream.
    fn error(&mut self, message: &str) -> Bytes;
}

/// The frames of one stream, each with the pause before it, and how the stream ends.
pub(crate) struct StreamPlan {
    frames: Vec<(Duration, Bytes)>,
    /// After this many frames, fail the body: the connection is aborted mid-stream.
    abort_after_frames: Option<usize>,
    /// The outcome once every frame is sent.
    end: Outcome,
}

impl StreamPlan {
    /// Lays out `events` with `behavior`'s pause before each content chunk and its stream
    /// fault, if any.
    pub(crate) fn new(mut events: impl EventStream, behavior: &Behavior) -> StreamPlan {
        let chunk_delay = behavior.chunk_delay.unwrap_or_default();
        let mut frames: Vec<(Duration, Bytes)> = events
            .opening()
            .into_iter()
            .map(|event| (Duration::ZERO, event))
            .collect();
        // Counted in frames, "after N content chunks" comes after the opening events.
        let abort_after_frames = match behavior.fault {
            Some(Fault::AbortAfterChunks(chunks)) => Some(frames.len().saturating_add(chunks)),
            _ => None,
        };
        let chunks = events.chunk_count();
        let error_after = match behavior.fault {
            Some(Fault::ErrorAfterChunks(after)) => Some(after.min(chunks)),
            _ => None,
        };
        for index in 0..error_after.unwrap_or(chunks) {
            frames.push((chunk_delay, events.chunk(index)));
        }
        let end = match error_after {
            Some(after) => {
                let message = format!(
                    "Injected fault: the mock upstream failed the stream; chunks sent: {after}."
                );
                frames.push((Duration::ZERO, events.error(&message)));
                Outcome::Faulted
            }
            None => {
                let closing = events.closing().into_iter();
                frames.extend(closing.map(|event| (Duration::ZERO, event)));
                Outcome::Completed
            }
        };
        StreamPlan {
            frames,
            abort_after_frames,
            end,
        }
    }

    /// The `text/event-stream` response that sends the frames, recording progress in `guard`.
    pub(crate) fn into_response(self, guard: HangUpGuard) -> Response<MockBody> {
        let stream = MockStream {
            frames: self.frames.into_iter(),
            abort_after_frames: self.abort_after_frames,
            end: self.end,
            sent: 0,
            pending: None,
            abort_pause: None,
            guard,
        };
        let mut response = Response::new(stream.boxed());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        response
    }
}

/// An unnamed event: `data: {json}`.
pub(crate) fn data_event(data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// A named event: `event: {name}` and `data: {json}`.
pub(crate) fn named_event(name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The end of an OpenAI chat or completions stream.
pub(crate) const DONE: Bytes = Bytes::from_static(b"data: [DONE]\n\n");

/// An SSE body that hands each frame to the connection after its pause, records when, and
/// notices the client going away (the body is dropped before its end).
struct MockStream {
    frames: std::vec::IntoIter<(Duration, Bytes)>,
    abort_after_frames: Option<usize>,
    end: Outcome,
    sent: usize,
    pending: Option<(Pin<Box<Sleep>>, Bytes)>,
    abort_pause: Option<Pin<Box<Sleep>>>,
    guard: HangUpGuard,
}

/// How long an aborting stream waits, with its frames flushed, before it cuts the connection.
const ABORT_PAUSE: Duration = Duration::from_millis(20);

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
                this.guard.0.finish(this.end);
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
