//! Reading the request body once and sharing its parse through the request extensions.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::request::Parts;
use pin_project_lite::pin_project;

use crate::body::{BodyError, BoxError, Collect, collect_limited};
use crate::chat::{ChatRequest, ParseError};

/// A sensible default for the largest request body a gateway reads: 4 MiB holds far more
/// prompt than any context window, and stops abuse early.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A sensible default for how long a whole request body may take to arrive.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a request body the first body-aware layer reads, and for how long.
///
/// Every body-aware layer has one (the same defaults everywhere); whichever layer reads the
/// body first applies its own.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::BodyLimit;
///
/// let limit = BodyLimit::default().with_max_bytes(1 << 20).with_read_timeout(Duration::from_secs(10));
/// assert_eq!(limit.max_bytes(), 1 << 20);
/// assert_eq!(BodyLimit::default().max_bytes(), tollgate_core::DEFAULT_BODY_LIMIT);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit {
    max_bytes: usize,
    read_timeout: Option<Duration>,
}

impl Default for BodyLimit {
    fn default() -> Self {
        BodyLimit {
            max_bytes: DEFAULT_BODY_LIMIT,
            read_timeout: Some(DEFAULT_READ_TIMEOUT),
        }
    }
}

impl BodyLimit {
    /// With at most `max_bytes` read.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// With the whole body to arrive within `timeout`.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// With no read timeout (for tests, or a server that enforces one itself).
    pub fn without_read_timeout(mut self) -> Self {
        self.read_timeout = None;
        self
    }

    /// The most bytes read.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// How long the whole body may take to arrive, if limited.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }
}

/// What [`buffer_chat_request`] resolves to: the request (with a rebuilt body) and its parse.
pub type Buffered<B> = (Request<B>, Result<ChatRequest, ParseError>);

/// Returns the request's [`ChatRequest`], reading and parsing the body only if no layer did so
/// before: the first body-aware layer reads the body (never more than `limit` bytes, and
/// within its read timeout — the timer needs a Tokio runtime), parses it once and memoizes the result in the request extensions; every later layer gets the memo
/// without touching the body.
///
/// The request comes back with a body rebuilt from the buffered bytes (a cheap reference
/// count, no copy). A JSON error leaves the request usable and memoizes the [`ParseError`];
/// only a body that cannot be read (too large, or the stream failed) consumes the request.
/// The future is a named type, so layers hold it without boxing.
///
/// ```
/// use http::Request;
/// use tollgate_core::{Body, BodyLimit, ChatRequest, buffer_chat_request};
///
/// # tokio_test::block_on(async {
/// let request = Request::new(Body::from(r#"{"model":"gpt-5.4","messages":[]}"#));
/// let limit = BodyLimit::default().with_max_bytes(1024);
/// let (request, chat) = buffer_chat_request(request, limit).await.unwrap();
/// assert_eq!(chat.unwrap().model(), Some("gpt-5.4"));
/// // A second layer gets the memo: same parse, no second read.
/// assert!(request.extensions().get::<ChatRequest>().is_some());
/// let (_request, again) = buffer_chat_request(request, limit).await.unwrap();
/// assert_eq!(again.unwrap().model(), Some("gpt-5.4"));
/// # });
/// ```
pub fn buffer_chat_request<B>(request: Request<B>, limit: BodyLimit) -> BufferRequest<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    let memo = match request.extensions().get::<ChatRequest>() {
        Some(chat) => Some(Ok(chat.clone())),
        None => request.extensions().get::<ParseError>().cloned().map(Err),
    };
    let state = match memo {
        Some(parsed) => State::Memoized {
            done: Some((request, parsed)),
        },
        None => {
            let (parts, body) = request.into_parts();
            State::Reading {
                parts: Some(parts),
                collect: collect_limited(body, limit.max_bytes),
                deadline: match limit.read_timeout {
                    Some(after) => Deadline::Armed {
                        sleep: tokio::time::sleep(after),
                        after,
                    },
                    None => Deadline::Never,
                },
            }
        }
    };
    BufferRequest { state }
}

pin_project! {
    /// The future of [`buffer_chat_request`].
    pub struct BufferRequest<B> {
        #[pin]
        state: State<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B> {
        Memoized { done: Option<Buffered<B>> },
        Reading { parts: Option<Parts>, #[pin] collect: Collect<B>, #[pin] deadline: Deadline },
    }
}

pin_project! {
    #[project = DeadlineProj]
    enum Deadline {
        Never,
        Armed { #[pin] sleep: tokio::time::Sleep, after: Duration },
    }
}

impl<B> BufferRequest<B> {
    /// Takes the memo an earlier layer left, at once; `None` when the body is still to be
    /// read (poll the future then).
    pub fn take_memo(&mut self) -> Option<Buffered<B>> {
        match &mut self.state {
            State::Memoized { done } => done.take(),
            State::Reading { .. } => None,
        }
    }
}

impl<B> fmt::Debug for BufferRequest<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferRequest").finish_non_exhaustive()
    }
}

impl<B> Future for BufferRequest<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Buffered<B>, BodyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Memoized { done } => Poll::Ready(Ok(done
                .take()
                .expect("BufferRequest polled after completion"))),
            StateProj::Reading {
                parts,
                collect,
                deadline,
            } => {
                let bytes = match collect.poll(cx) {
                    Poll::Ready(bytes) => bytes?,
                    Poll::Pending => {
                        if let DeadlineProj::Armed { sleep, after } = deadline.project()
                            && sleep.poll(cx).is_ready()
                        {
                            return Poll::Ready(Err(BodyError::TimedOut { after: *after }));
                        }
                        return Poll::Pending;
                    }
                };
                let mut parts = parts.take().expect("BufferRequest polled after completion");
                let parsed = ChatRequest::parse(bytes.clone());
                match &parsed {
                    Ok(chat) => parts.extensions.insert(chat.clone()).map(drop),
                    Err(error) => parts.extensions.insert(error.clone()).map(drop),
                };
                Poll::Ready(Ok((Request::from_parts(parts, B::from(bytes)), parsed)))
            }
        }
    }
}
