//! Reading the request body once and sharing its parse through the request extensions.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use pin_project_lite::pin_project;

use crate::GatewayError;
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
/// within its read timeout — the timer needs a Tokio runtime), parses it once and memoizes the
/// result in the request extensions; every later layer gets the memo without touching the body.
///
/// The request comes back with a body rebuilt from the buffered bytes (a cheap reference
/// count, no copy). A JSON error leaves the request usable and memoizes the [`ParseError`];
/// only a body that cannot be read (too large, or the stream failed) consumes the request.
/// The future is a named type, so layers hold it without boxing. (An admission check reads the
/// body in place instead, with [`read_body`] and [`BodyArrived::parse`].)
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
pub fn buffer_chat_request<B>(mut request: Request<B>, limit: BodyLimit) -> BufferRequest<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    let read = (!is_parsed(&request)).then(|| read_body(&mut request, limit));
    BufferRequest {
        request: Some(request),
        read,
    }
}

pin_project! {
    /// The future of [`buffer_chat_request`].
    pub struct BufferRequest<B> {
        request: Option<Request<B>>,
        // `None` when an earlier layer memoized the parse.
        #[pin]
        read: Option<ReadBody<B>>,
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
        let this = self.project();
        let arrived = match this.read.as_pin_mut() {
            Some(read) => ready!(read.poll(cx)),
            None => BodyArrived(None),
        };
        let mut request = this
            .request
            .take()
            .expect("BufferRequest polled after completion");
        let parsed = arrived.parse(&mut request)?;
        Poll::Ready(Ok((request, parsed)))
    }
}

/// Whether an earlier layer has read and parsed the request's body (the memo is in its
/// extensions).
fn is_parsed<B>(request: &Request<B>) -> bool {
    let extensions = request.extensions();
    extensions.get::<ChatRequest>().is_some() || extensions.get::<ParseError>().is_some()
}

/// Starts reading the request's body in place: the body is taken out of `request` (an empty one
/// stands in until [`BodyArrived::parse`] puts the bytes back), read under `limit`, and the
/// future resolves to what arrived.
///
/// ```
/// use http::Request;
/// use tollgate_core::{Body, BodyLimit, read_body};
///
/// # tokio_test::block_on(async {
/// let mut request = Request::new(Body::from(r#"{"model":"gpt-5.4","messages":[]}"#));
/// let arrived = read_body(&mut request, BodyLimit::default()).await;
/// let chat = arrived.parse(&mut request).unwrap().unwrap();
/// assert_eq!(chat.model(), Some("gpt-5.4"));
/// # });
/// ```
pub fn read_body<B>(request: &mut Request<B>, limit: BodyLimit) -> ReadBody<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    let body = std::mem::replace(request.body_mut(), B::from(Bytes::new()));
    ReadBody {
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

pin_project! {
    /// The future of [`read_body`].
    pub struct ReadBody<B> {
        #[pin]
        collect: Collect<B>,
        #[pin]
        deadline: Deadline,
    }
}

pin_project! {
    #[project = DeadlineProj]
    enum Deadline {
        Never,
        Armed { #[pin] sleep: tokio::time::Sleep, after: Duration },
    }
}

impl<B> fmt::Debug for ReadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBody").finish_non_exhaustive()
    }
}

impl<B> Future for ReadBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = BodyArrived;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BodyArrived> {
        let this = self.project();
        match this.collect.poll(cx) {
            Poll::Ready(bytes) => Poll::Ready(BodyArrived(Some(bytes))),
            Poll::Pending => {
                if let DeadlineProj::Armed { sleep, after } = this.deadline.project()
                    && sleep.poll(cx).is_ready()
                {
                    return Poll::Ready(BodyArrived(Some(Err(BodyError::TimedOut {
                        after: *after,
                    }))));
                }
                Poll::Pending
            }
        }
    }
}

/// What a body-aware check has once the body is there: the bytes [`read_body`] read, or the
/// memo of an earlier layer ([`Start::with_body`](crate::admission::Start::with_body) decides
/// on it at once).
#[derive(Debug)]
pub struct BodyArrived(Option<Result<Bytes, BodyError>>);

impl BodyArrived {
    /// An earlier layer read and parsed the body already; its memo is in the extensions.
    pub(crate) fn memoized() -> Self {
        BodyArrived(None)
    }

    /// The request's parse: the memo, or the arrived bytes parsed once, put back as the body
    /// and memoized for the layers after this one. A body that could not be read is the
    /// outer error; one that is not a valid request the inner.
    pub fn parse<B: From<Bytes>>(
        self,
        request: &mut Request<B>,
    ) -> Result<Result<ChatRequest, ParseError>, BodyError> {
        let extensions = request.extensions_mut();
        let bytes = match self.0 {
            Some(read) => read?,
            None => {
                return Ok(match extensions.get::<ChatRequest>() {
                    Some(chat) => Ok(chat.clone()),
                    None => Err(extensions
                        .get::<ParseError>()
                        .cloned()
                        .expect("BodyArrived::memoized without a memo")),
                });
            }
        };
        let parsed = ChatRequest::parse(bytes.clone());
        match &parsed {
            Ok(chat) => extensions.insert(chat.clone()).map(drop),
            Err(error) => extensions.insert(error.clone()).map(drop),
        };
        *request.body_mut() = B::from(bytes);
        Ok(parsed)
    }

    /// [`parse`](Self::parse), with a body that could not be read or parsed as the error the
    /// client gets.
    pub fn chat<B: From<Bytes>>(
        self,
        request: &mut Request<B>,
    ) -> Result<ChatRequest, GatewayError> {
        match self.parse(request) {
            Ok(Ok(chat)) => Ok(chat),
            Ok(Err(error)) => Err(GatewayError::from(&error)),
            Err(error) => Err(GatewayError::from(&error)),
        }
    }
}
