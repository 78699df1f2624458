//! Watching a response for its usage as it streams through.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tollgate_core::{BoxError, Usage};
use tollgate_sse::{ChatStreamSummary, Event, SseBody, SseObserver, StreamEnd};

use crate::accounting::{Accountant, Ending};
use crate::{CapStore, InMemoryCapStore, Ledger};

/// The last bytes of a JSON response kept to find `usage`: it closes a chat completion.
const TAIL: usize = 8 * 1024;

pin_project! {
    /// A JSON response body, forwarded frame by frame, that settles the request from the
    /// `usage` at its end. Only its last few KiB are kept, never the whole response.
    pub(crate) struct UsageBody<B, L: Ledger, C: CapStore> {
        #[pin]
        inner: B,
        tail: Tail,
        accountant: Option<Box<Accountant<L, C>>>,
    }
}

/// The end of a body so far: its only frame as it came (shared, not copied: most JSON answers
/// are one frame), then, once a second one arrives, the last [`TAIL`] bytes copied.
enum Tail {
    Frame(Bytes),
    Copied(Vec<u8>),
}

impl Tail {
    fn push(&mut self, data: &Bytes) {
        match self {
            Tail::Frame(only) if only.is_empty() => *only = data.clone(),
            Tail::Frame(only) => {
                let mut copied = Vec::with_capacity(TAIL.min(only.len() + data.len()));
                keep_tail(&mut copied, only);
                keep_tail(&mut copied, data);
                *self = Tail::Copied(copied);
            }
            Tail::Copied(copied) => keep_tail(copied, data),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Tail::Frame(only) => only,
            Tail::Copied(copied) => copied,
        }
    }
}

impl<B, L: Ledger, C: CapStore> UsageBody<B, L, C> {
    pub(crate) fn new(inner: B, accountant: Box<Accountant<L, C>>) -> Self {
        UsageBody {
            inner,
            tail: Tail::Frame(Bytes::new()),
            accountant: Some(accountant),
        }
    }
}

impl<B, L, C> http_body::Body for UsageBody<B, L, C>
where
    B: http_body::Body<Data = Bytes>,
    L: Ledger,
    C: CapStore,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.tail.push(data);
                }
                // A server stops polling once a body says it is done (a known length read
                // to its end), so the end is settled here rather than on a `None` never asked for.
                if this.inner.is_end_stream()
                    && let Some(mut accountant) = this.accountant.take()
                {
                    accountant.finish(ending(this.tail.bytes()));
                }
            }
            Some(Err(_)) => {
                if let Some(mut accountant) = this.accountant.take() {
                    accountant.finish(Ending::Failed);
                }
            }
            None => {
                if let Some(mut accountant) = this.accountant.take() {
                    accountant.finish(ending(this.tail.bytes()));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn ending(tail: &[u8]) -> Ending {
    match usage_in_tail(tail) {
        Some(usage) => Ending::Usage(usage),
        None => Ending::NoUsage { output_bytes: 0 },
    }
}

fn keep_tail(tail: &mut Vec<u8>, data: &[u8]) {
    if data.len() >= TAIL {
        tail.clear();
        tail.extend_from_slice(&data[data.len() - TAIL..]);
        return;
    }
    let overflow = (tail.len() + data.len()).saturating_sub(TAIL);
    tail.drain(..overflow);
    tail.extend_from_slice(data);
}

/// The `usage` object in the tail of a chat completion.
fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    let key = b"\"usage\"";
    // Back from the end, quote by quote (`memrchr` is vectorized; a reverse substring search
    // is not): the usage object is near the end of a completion.
    let at = memchr::memrchr_iter(b'"', tail).find(|&at| tail[at..].starts_with(key))?;
    let rest = &tail[at + key.len()..];
    let colon = rest.iter().position(|&b| b == b':')?;
    let value = &rest[colon + 1..];
    // Checked as text once, up to any invalid byte after the object: read from a slice, serde
    // would check each member name again.
    let text = match std::str::from_utf8(value) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&value[..error.valid_up_to()]).ok()?,
    };
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<Usage>();
    values.next()?.ok()
}

/// Watches an event stream for its usage chunk, then settles.
pub(crate) struct UsageObserver<L: Ledger, C: CapStore> {
    pub(crate) summary: ChatStreamSummary,
    pub(crate) accountant: Box<Accountant<L, C>>,
}

impl<L: Ledger, C: CapStore> SseObserver for UsageObserver<L, C> {
    fn on_event(&mut self, event: &Event<'_>) {
        self.summary.observe(event);
    }

    fn on_end(&mut self, end: StreamEnd) {
        let ending = match (end, self.summary.usage) {
            (StreamEnd::UpstreamFailed, _) => Ending::Failed,
            (_, Some(usage)) => Ending::Usage(usage),
            (_, None) => Ending::NoUsage {
                output_bytes: self.summary.content_bytes,
            },
        };
        self.accountant.finish(ending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_in_the_tail_of_a_long_completion() {
        let content = "x".repeat(50_000);
        let body = format!(
            r#"{{"id":"1","choices":[{{"message":{{"content":"{content} \"usage\": fake"}}}}],"usage":{{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"completion_tokens_details":{{"reasoning_tokens":0}}}}}}"#
        );
        // In frames: the last bytes, copied.
        let mut tail = Tail::Frame(Bytes::new());
        for chunk in body.as_bytes().chunks(1000) {
            tail.push(&Bytes::copy_from_slice(chunk));
        }
        assert!(matches!(tail, Tail::Copied(_)));
        assert!(tail.bytes().len() <= TAIL);
        assert_eq!(usage_in_tail(tail.bytes()), Some(Usage::new(12, 34)));
        // In one frame: kept as it came.
        let mut whole = Tail::Frame(Bytes::new());
        whole.push(&Bytes::from(body));
        assert!(matches!(whole, Tail::Frame(_)));
        assert_eq!(usage_in_tail(whole.bytes()), Some(Usage::new(12, 34)));
        assert_eq!(usage_in_tail(br#"{"choices":[]}"#), None);
    }

    #[test]
    fn usage_is_read_up_to_bytes_that_are_not_text_after_it() {
        let tail = b"\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\xff\xfe";
        assert_eq!(usage_in_tail(tail), Some(Usage::new(3, 4)));
        let cut = b"\"usage\":{\"prompt_tokens\":3,\xff\"completion_tokens\":4}}";
        assert_eq!(usage_in_tail(cut), None);
    }
}

pin_project! {
    /// The response body of [`BalanceGate`](crate::BalanceGate): passed through, watched for
    /// usage (JSON or event stream), or a rendered 402.
    pub struct BalanceBody<B, L: Ledger, C: CapStore = InMemoryCapStore> {
        #[pin]
        kind: Kind<B, L, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, L: Ledger, C: CapStore> {
        Passthrough { #[pin] body: B },
        Json { #[pin] body: UsageBody<B, L, C> },
        Stream { #[pin] body: SseBody<B> },
        Rendered { body: Full<Bytes> },
    }
}

impl<B, L: Ledger, C: CapStore> BalanceBody<B, L, C> {
    pub(crate) fn passthrough(body: B) -> Self {
        BalanceBody {
            kind: Kind::Passthrough { body },
        }
    }

    pub(crate) fn json(body: UsageBody<B, L, C>) -> Self {
        BalanceBody {
            kind: Kind::Json { body },
        }
    }

    pub(crate) fn stream(body: SseBody<B>) -> Self {
        BalanceBody {
            kind: Kind::Stream { body },
        }
    }

    pub(crate) fn rendered(body: Full<Bytes>) -> Self {
        BalanceBody {
            kind: Kind::Rendered { body },
        }
    }
}

impl<B, L: Ledger, C: CapStore> fmt::Debug for BalanceBody<B, L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Passthrough { .. } => "BalanceBody::Passthrough",
            Kind::Json { .. } => "BalanceBody::Json",
            Kind::Stream { .. } => "BalanceBody::Stream",
            Kind::Rendered { .. } => "BalanceBody::Rendered",
        })
    }
}

impl<B, L, C> http_body::Body for BalanceBody<B, L, C>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    L: Ledger,
    C: CapStore,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body.poll_frame(cx),
            KindProj::Json { body } => body.poll_frame(cx),
            KindProj::Stream { body } => body.poll_frame(cx),
            KindProj::Rendered { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Json { body } => body.is_end_stream(),
            Kind::Stream { body } => body.is_end_stream(),
            Kind::Rendered { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Json { body } => body.size_hint(),
            Kind::Stream { body } => body.size_hint(),
            Kind::Rendered { body } => body.size_hint(),
        }
    }
}
