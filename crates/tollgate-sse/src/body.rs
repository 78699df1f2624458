//! The passthrough response body.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tollgate_core::timer::WaitTimer;
use tollgate_core::{BoxError, Endpoint, ErrorKind, GatewayError, Telemetry};

use crate::observer::is_usage_only;
use crate::{Event, SseObserver, SseParser, StreamEnd};

/// The comment sent after a quiet period, so proxies and clients keep the connection open.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

pin_project! {
    /// The response body of [`SsePassthroughLayer`](crate::SsePassthroughLayer): an event
    /// stream forwarded frame by frame as it arrives (never coalesced, never held for an event
    /// boundary), with observers fed from one parse. Non-stream responses pass through it
    /// untouched.
    ///
    /// What the client sees when the upstream fails mid-stream: the frames received so far,
    /// then (after a `\n\n` that ends any partial event) one terminal event, then a clean end
    /// of stream. The event is the one OpenAI sends for the endpoint, on which its SDKs raise:
    /// `data: {"error":{"message":...,"type":"provider_error",...},"request_id":...}` for chat
    /// and legacy completions; for the Responses API (see
    /// [`with_endpoint`](SseBody::with_endpoint)) `event: error` with
    /// `data: {"type":"error","code":"provider_error","message":...,"param":null,"sequence_number":...}`,
    /// numbered after the last event the upstream sent.
    pub struct SseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Passthrough { #[pin] body: B },
        // Boxed: the stream's state would make every response (JSON ones too) that much
        // larger to move through the layers above.
        Stream { stream: Box<Stream<B>> },
        Rendered { body: http_body_util::Full<Bytes> },
    }
}

/// The state of an event stream being forwarded.
pub(crate) struct Stream<B> {
    /// Boxed so that a drain task can take it over when the client goes away.
    inner: Option<Pin<Box<B>>>,
    /// Present when observers watch, the usage chunk is stripped, or events are numbered.
    parser: Option<SseParser>,
    observers: Vec<Box<dyn SseObserver>>,
    strip_usage: bool,
    /// Strip mode: bytes of an event not yet complete.
    pending: BytesMut,
    /// Strip mode: the event cut last ended its frame with `\r`, so a `\n` opening the next
    /// frame is the rest of its line ending, to cut too.
    cut_lf: bool,
    keep_alive: Option<KeepAlive>,
    /// The last bytes forwarded, to know whether the client's stream is at an event boundary.
    tail: [u8; 4],
    terminal: Option<Bytes>,
    ended: bool,
    request_id: Option<HeaderValue>,
    drain: Option<DrainFn<B>>,
    /// A Responses API stream: its events are numbered, and so is the terminal error event.
    responses: bool,
    /// The `sequence_number` of the last event, in a Responses API stream.
    last_sequence: Option<u64>,
    telemetry: Option<Telemetry>,
}

/// The keep-alive timer. A frame only notes the time: moving the timer's deadline takes the
/// timer wheel's lock, so it moves once per period of quiet, when it fires, not per frame.
struct KeepAlive {
    period: Duration,
    last_frame: Instant,
    timer: WaitTimer,
}

type DrainFn<B> = fn(Pin<Box<B>>, Option<SseParser>, Vec<Box<dyn SseObserver>>);

impl<B> SseBody<B> {
    /// A body that passes `body` through untouched.
    pub fn passthrough(body: B) -> Self {
        SseBody {
            kind: Kind::Passthrough { body },
        }
    }

    /// A body the layer rendered itself (an error answered before any upstream call).
    pub(crate) fn rendered(body: http_body_util::Full<Bytes>) -> Self {
        SseBody {
            kind: Kind::Rendered { body },
        }
    }

    /// An event stream: forwarded as it arrives, observed, with keep-alives after `keep_alive`
    /// of quiet (needs a Tokio runtime), and the usage-only chunk removed when `strip_usage`.
    pub fn stream(
        body: B,
        observers: Vec<Box<dyn SseObserver>>,
        keep_alive: Option<Duration>,
        strip_usage: bool,
        request_id: Option<HeaderValue>,
    ) -> Self {
        let parser = (strip_usage || !observers.is_empty()).then(SseParser::new);
        SseBody {
            kind: Kind::Stream {
                stream: Box::new(Stream {
                    inner: Some(Box::pin(body)),
                    parser,
                    observers,
                    strip_usage,
                    pending: BytesMut::new(),
                    cut_lf: false,
                    keep_alive: keep_alive.map(|period| {
                        let now = Instant::now();
                        KeepAlive {
                            period,
                            last_frame: now,
                            timer: WaitTimer::at(now + period),
                        }
                    }),
                    tail: *b"\n\n\n\n",
                    terminal: None,
                    ended: false,
                    request_id,
                    drain: None,
                    responses: false,
                    last_sequence: None,
                    telemetry: None,
                }),
            },
        }
    }

    /// The endpoint the stream answers: a failure mid-stream is reported in its shape (the
    /// Responses API's `error` event, numbered after the upstream's last event, for
    /// [`Endpoint::Responses`]; the chat shape otherwise).
    ///
    /// ```
    /// use tollgate_core::{Body, Endpoint};
    /// use tollgate_sse::SseBody;
    ///
    /// let body = SseBody::stream(Body::empty(), Vec::new(), None, false, None)
    ///     .with_endpoint(Endpoint::Responses);
    /// # let _ = body;
    /// ```
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        if let Kind::Stream { stream } = &mut self.kind {
            stream.responses = endpoint == Endpoint::Responses;
            if stream.responses && stream.parser.is_none() {
                stream.parser = Some(SseParser::new());
            }
        }
        self
    }

    /// Tells `telemetry` how the stream failed, if it fails mid-stream (the status, 200, went
    /// out with the head).
    ///
    /// ```
    /// use tollgate_core::{Body, Telemetry};
    /// use tollgate_sse::SseBody;
    ///
    /// let body = SseBody::stream(Body::empty(), Vec::new(), None, false, None)
    ///     .with_telemetry(Telemetry::new());
    /// # let _ = body;
    /// ```
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        if let Kind::Stream { stream } = &mut self.kind {
            stream.telemetry = Some(telemetry);
        }
        self
    }

    /// When the client goes away, keep reading the upstream to its end (on a Tokio task) so
    /// observers still see the whole stream, usage included, instead of cancelling it.
    pub fn drain_on_disconnect(mut self) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Kind::Stream { stream } = &mut self.kind {
            stream.drain = Some(drain::<B>);
        }
        self
    }
}

impl<B> fmt::Debug for SseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Passthrough { .. } => f.write_str("SseBody::Passthrough"),
            Kind::Rendered { .. } => f.write_str("SseBody::Rendered"),
            Kind::Stream { stream } => f
                .debug_struct("SseBody::Stream")
                .field("observers", &stream.observers.len())
                .field("strip_usage", &stream.strip_usage)
                .finish_non_exhaustive(),
        }
    }
}

impl<B> http_body::Body for SseBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body.poll_frame(cx),
            KindProj::Stream { stream } => stream.poll_frame(cx).map(|frame| frame.map(Ok)),
            KindProj::Rendered { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Stream { stream } => stream.ended && stream.terminal.is_none(),
            Kind::Rendered { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            // The stream's length is unknown: no content-length.
            Kind::Stream { .. } => SizeHint::default(),
            Kind::Rendered { body } => body.size_hint(),
        }
    }
}

impl<B> Stream<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<Bytes>>> {
        loop {
            if let Some(terminal) = self.terminal.take() {
                return Poll::Ready(Some(Frame::data(terminal)));
            }
            let Some(inner) = self.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.quiet_from_now();
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(trailers) => return Poll::Ready(Some(trailers)),
                    };
                    if let Some(out) = self.process(data) {
                        self.remember_tail(&out);
                        return Poll::Ready(Some(Frame::data(out)));
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    let error: BoxError = error.into();
                    tracing::warn!(error = %error, "upstream stream failed mid-stream");
                    self.inner = None;
                    self.terminal = Some(self.terminal_event(&error));
                    self.end(StreamEnd::UpstreamFailed);
                }
                Poll::Ready(None) => {
                    self.inner = None;
                    self.end(StreamEnd::Completed);
                    let rest = std::mem::take(&mut self.pending);
                    return Poll::Ready((!rest.is_empty()).then(|| Frame::data(rest.freeze())));
                }
                Poll::Pending => return self.poll_keep_alive(cx),
            }
        }
    }

    /// Feeds observers and, in strip mode, cuts the usage-only event out. Returns what to
    /// forward now (the frame itself, untouched, unless something was cut or held back).
    fn process(&mut self, data: Bytes) -> Option<Bytes> {
        let Some(parser) = self.parser.as_mut() else {
            return Some(data);
        };
        let observers = &mut self.observers;
        let last_sequence = &mut self.last_sequence;
        let responses = self.responses;
        let mut observe = |event: &Event<'_>| {
            observers.iter_mut().for_each(|o| o.on_event(event));
            if responses && let Some(number) = sequence_number(event.data) {
                *last_sequence = Some(number);
            }
        };
        if !self.strip_usage {
            parser.feed(&data, observe);
            return Some(data);
        }
        // The frame goes on as it came (shared, not copied) unless an event is cut out of it or
        // an event held back from the frame before is completed in it.
        let mut carried = Some(std::mem::take(&mut self.pending)).filter(|held| !held.is_empty());
        // `None`: what to forward so far is `data[..segment]` itself.
        let mut out: Option<BytesMut> = None;
        let mut segment = 0;
        // A `\n` that ends the line the frame before ended with `\r` belongs to the event
        // that line ended: forwarded with it, or cut with it.
        if carried.is_none() && parser.awaits_lf() && data.first() == Some(&b'\n') {
            segment = 1;
            if self.cut_lf {
                out = Some(BytesMut::new());
            }
        }
        self.cut_lf = false;
        let cut_lf = &mut self.cut_lf;
        parser.feed(&data, |event| {
            observe(event);
            let held = carried.take();
            let usage_only = is_usage_only(event.data);
            let out = match &mut out {
                Some(out) => out,
                None if usage_only || held.is_some() => {
                    out.insert(BytesMut::from(&data[..segment]))
                }
                None => {
                    segment = event.end;
                    return;
                }
            };
            if usage_only {
                *cut_lf = event.end == data.len() && data.ends_with(b"\r");
            } else {
                out.extend_from_slice(&held.unwrap_or_default());
                out.extend_from_slice(&data[segment..event.end]);
            }
            segment = event.end;
        });
        let rest = &data[segment..];
        if !parser.at_boundary() {
            // An event still arriving: hold it until it is complete and known not to be usage.
            let mut pending = carried.unwrap_or_default();
            pending.extend_from_slice(rest);
            self.pending = pending;
            return match out {
                Some(out) => (!out.is_empty()).then(|| out.freeze()),
                None => (segment > 0).then(|| data.slice(..segment)),
            };
        }
        let mut out = match out {
            Some(out) => out,
            None if carried.is_none() => return Some(data),
            None => BytesMut::from(&data[..segment]),
        };
        out.extend_from_slice(&carried.unwrap_or_default());
        out.extend_from_slice(rest);
        (!out.is_empty()).then(|| out.freeze())
    }

    fn remember_tail(&mut self, out: &[u8]) {
        if let Some(last) = out.last_chunk() {
            self.tail = *last;
            return;
        }
        for &byte in out {
            self.tail = [self.tail[1], self.tail[2], self.tail[3], byte];
        }
    }

    fn quiet_from_now(&mut self) {
        if let Some(keep_alive) = &mut self.keep_alive {
            keep_alive.last_frame = Instant::now();
        }
    }

    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame<Bytes>>> {
        let Some(keep_alive) = &mut self.keep_alive else {
            return Poll::Pending;
        };
        loop {
            if keep_alive.timer.poll_expired(cx).is_pending() {
                return Poll::Pending;
            }
            let quiet_until = keep_alive.last_frame + keep_alive.period;
            let now = Instant::now();
            if quiet_until > now {
                // A frame came since the timer was set: wait out the period from that frame.
                keep_alive.timer.reset(quiet_until);
                continue;
            }
            keep_alive.last_frame = now;
            keep_alive.timer.reset(now + keep_alive.period);
            if client_at_boundary(self.tail, &self.pending) {
                return Poll::Ready(Some(Frame::data(Bytes::from_static(KEEP_ALIVE))));
            }
            // A comment inside a partial event would corrupt it: wait for the next period (the
            // loop registers this task with the timer again).
        }
    }

    /// The endpoint's terminal error event for `failure`: the gateway's own error when it cut
    /// the stream (the total timeout), else the provider's failure.
    fn terminal_event(&self, failure: &BoxError) -> Bytes {
        let error = match failure.downcast_ref::<GatewayError>() {
            Some(error) => error.clone(),
            None => GatewayError::new(
                ErrorKind::ProviderError,
                "The upstream provider failed in the middle of the stream. The response is incomplete; send the request again.",
            ),
        };
        if let Some(telemetry) = &self.telemetry {
            telemetry.set_stream_error(error.kind);
        }
        let mut event = BytesMut::new();
        if !client_at_boundary(self.tail, &self.pending) {
            event.extend_from_slice(b"\n\n");
        }
        if self.responses {
            let next = self.last_sequence.map_or(0, |last| last.saturating_add(1));
            event.extend_from_slice(b"event: error\ndata: ");
            event.extend_from_slice(&error.to_responses_event(next));
        } else {
            let request_id = self.request_id.as_ref().and_then(|id| id.to_str().ok());
            event.extend_from_slice(b"data: ");
            event.extend_from_slice(&error.to_json(request_id));
        }
        event.extend_from_slice(b"\n\n");
        event.freeze()
    }

    fn end(&mut self, end: StreamEnd) {
        if !self.ended {
            self.ended = true;
            self.observers.iter_mut().for_each(|o| o.on_end(end));
        }
    }
}

/// Whether what the client received so far (ending with `tail`) ends with a blank line: its
/// last line ending follows another one. Nothing may be held back (`pending`) either.
fn client_at_boundary(tail: [u8; 4], pending: &BytesMut) -> bool {
    let before_last_ending = match tail {
        [a, b, b'\r', b'\n'] => [a, b],
        [_, a, b, b'\n' | b'\r'] => [a, b],
        _ => return false,
    };
    pending.is_empty() && matches!(before_last_ending[1], b'\n' | b'\r')
}

/// The top-level `sequence_number` of a Responses API event's data, found without parsing the
/// event: the key cannot occur inside a string value, where its quotes would be escaped, and
/// OpenAI's events nest no object that has one.
fn sequence_number(data: &str) -> Option<u64> {
    const KEY: &[u8] = b"\"sequence_number\"";
    let at = memchr::memmem::rfind(data.as_bytes(), KEY)? + KEY.len();
    let value = data[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    value[..digits].parse().ok()
}

impl<B> Drop for Stream<B> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // The client went away before the end.
        match (
            self.drain,
            self.inner.take(),
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(drain), Some(inner), Ok(_)) => {
                drain(
                    inner,
                    self.parser.take(),
                    std::mem::take(&mut self.observers),
                );
            }
            _ => {
                self.ended = true;
                self.observers
                    .iter_mut()
                    .for_each(|o| o.on_end(StreamEnd::ClientGone));
            }
        }
    }
}

/// Reads the rest of the upstream stream on a task, feeding the observers, then ends them.
fn drain<B>(
    mut inner: Pin<Box<B>>,
    mut parser: Option<SseParser>,
    mut observers: Vec<Box<dyn SseObserver>>,
) where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    tokio::spawn(async move {
        let end = loop {
            match std::future::poll_fn(|cx| inner.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let (Ok(data), Some(parser)) = (frame.into_data(), parser.as_mut()) {
                        parser.feed(&data, |event| {
                            observers.iter_mut().for_each(|o| o.on_event(event))
                        });
                    }
                }
                Some(Err(_)) => break StreamEnd::UpstreamFailed,
                None => break StreamEnd::Completed,
            }
        };
        observers.iter_mut().for_each(|o| o.on_end(end));
    });
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::future::poll_fn;
    use std::io;
    use std::pin::{Pin, pin};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body::{Body as _, Frame};
    use http_body_util::BodyExt;

    use super::{KEEP_ALIVE, SseBody, sequence_number};

    /// An upstream that never sends.
    struct Quiet;

    impl http_body::Body for Quiet {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    /// An upstream that sends its frames, then fails.
    struct FailsAfter(VecDeque<Bytes>);

    impl http_body::Body for FailsAfter {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            Poll::Ready(Some(match self.0.pop_front() {
                Some(data) => Ok(Frame::data(data)),
                None => Err(io::Error::other("connection reset")),
            }))
        }
    }

    #[tokio::test]
    async fn the_terminal_event_starts_an_event_of_its_own_however_the_frames_were_cut() {
        for (sent, ends_an_event) in [
            ("data: a\n\n", true),
            ("data: a\r\n\r\n", true),
            (": hi\r\r", true),
            ("data: a\n", false),
            ("data: a\n\ndata: b", false),
            ("data: a\r\n", false),
        ] {
            for size in 1..=sent.len() {
                let frames = sent.as_bytes().chunks(size).map(Bytes::copy_from_slice);
                let body =
                    SseBody::stream(FailsAfter(frames.collect()), Vec::new(), None, false, None);
                let received = body.collect().await.unwrap().to_bytes();
                let received = std::str::from_utf8(&received).unwrap();
                let terminal = received.strip_prefix(sent).unwrap();
                let context = format!("{sent:?} in frames of {size}: {terminal:?}");
                assert_eq!(terminal.starts_with("\n\n"), !ends_an_event, "{context}");
                assert!(
                    terminal.trim_start().starts_with("data: {\"error\""),
                    "{context}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_comes_when_the_first_wait_was_turned_away_by_the_budget() {
        let period = Duration::from_secs(10);
        let mut body = pin!(SseBody::stream(
            Quiet,
            Vec::new(),
            Some(period),
            false,
            None
        ));
        // The connection task spent its budget (many frames written in one poll) before the
        // stream's first wait.
        poll_fn(|cx| {
            while tokio::task::coop::has_budget_remaining() {
                let _ = pin!(tokio::task::coop::consume_budget()).poll(cx);
            }
            assert!(body.as_mut().poll_frame(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        let frame = tokio::time::timeout(period * 2, body.frame()).await;
        let data = frame.expect("a keep-alive within the period");
        let data = data.and_then(|frame| frame.ok()?.into_data().ok());
        assert_eq!(data.as_deref(), Some(KEEP_ALIVE));
    }

    #[test]
    fn the_sequence_number_is_the_top_level_ones() {
        assert_eq!(
            sequence_number(r#"{"type":"response.created","sequence_number":0}"#),
            Some(0)
        );
        assert_eq!(
            sequence_number(r#"{"sequence_number" : 41, "type":"x","delta":"a"}"#),
            Some(41)
        );
        // Text that spells the key is inside a string, with its quotes escaped.
        assert_eq!(
            sequence_number(r#"{"sequence_number":3,"delta":"\"sequence_number\":99"}"#),
            Some(3)
        );
        assert_eq!(
            sequence_number(r#"{"delta":"\"sequence_number\":99"}"#),
            None
        );
        assert_eq!(sequence_number(r#"{"sequence_number":null}"#), None);
        assert_eq!(sequence_number("[DONE]"), None);
    }
}
