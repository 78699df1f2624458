//! Body helpers shared by every layer: a boxed request body, the response body layers answer
//! with, and reading a body under a byte limit.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;

use crate::{ErrorKind, GatewayError};

/// The boxed error type bodies and services use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A type-erased request body that can be rebuilt from buffered bytes.
///
/// Body-aware layers need `B: From<Bytes>` to put a buffered body back into the request.
/// axum's body already is; for hyper's `Incoming`, map the request once with [`Body::new`].
///
/// ```
/// use http_body_util::BodyExt;
/// use tollgate_core::Body;
///
/// # futures_executor::block_on(async {
/// let body = Body::from("hello");
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
/// # });
/// ```
pub struct Body(Inner);

/// Buffered bytes stay unboxed: the body-aware layers put one back into every request they
/// read.
enum Inner {
    /// Bytes to send once (taken when sent; none left is the end).
    Full(Option<Bytes>),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// Boxes any body whose data is `Bytes`.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body(Inner::Boxed(body.map_err(Into::into).boxed_unsync()))
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body::from(Bytes::new())
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body(Inner::Full(Some(bytes).filter(|bytes| !bytes.is_empty())))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body::from(Bytes::from_static(text.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::from(Bytes::from(text))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Inner::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Boxed(body) => body.size_hint(),
        }
    }
}

pin_project! {
    /// The response body of a layer that either forwards the inner response or answers
    /// itself with a rendered [`GatewayError`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use tollgate_core::ResponseBody;
    ///
    /// # futures_executor::block_on(async {
    /// let body: ResponseBody<Full<Bytes>> = ResponseBody::full(Bytes::from_static(b"{}"));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
    /// # });
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body, untouched.
    pub fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    /// A body of known bytes the layer produced itself.
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody::from(Full::new(bytes))
    }
}

impl<B> From<Full<Bytes>> for ResponseBody<B> {
    fn from(body: Full<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Full { body },
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Full { .. } => f.write_str("ResponseBody::Full"),
        }
    }
}

impl<B> http_body::Body for ResponseBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { body } => body.size_hint(),
        }
    }
}

/// Why a request body could not be buffered.
#[derive(Debug)]
pub enum BodyError {
    /// The body is longer than the limit; reading stopped at the first frame that crossed it.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The whole body did not arrive within the read timeout.
    TimedOut {
        /// The timeout.
        after: std::time::Duration,
    },
    /// The body stream failed (the client went away).
    Read(BoxError),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "request body larger than {limit} bytes"),
            BodyError::TimedOut { after } => {
                write!(f, "request body not received within {after:?}")
            }
            BodyError::Read(error) => write!(f, "request body could not be read: {error}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::TooLarge { .. } | BodyError::TimedOut { .. } => None,
            BodyError::Read(error) => Some(&**error),
        }
    }
}

impl From<&BodyError> for GatewayError {
    fn from(error: &BodyError) -> Self {
        match error {
            BodyError::TooLarge { limit } => GatewayError::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "The request body is larger than the gateway's limit of {limit} bytes. Shorten the messages or send fewer of them."
                ),
            )
            .detail("limit", *limit),
            BodyError::TimedOut { after } => GatewayError::new(
                ErrorKind::RequestTimeout,
                format!(
                    "The request body did not arrive within {} seconds. Send it again over a faster connection, or send a smaller request.",
                    after.as_secs_f64()
                ),
            ),
            BodyError::Read(_) => GatewayError::new(
                ErrorKind::InvalidRequest,
                "The request body could not be read completely. Send the request again.",
            ),
        }
    }
}

/// Reads a whole body, but never more than `limit` bytes: a `Content-Length` (or any exact size
/// hint) over the limit fails before the first read, and a streaming body stops being polled at
/// the frame that crosses the limit. A single-frame body is returned without copying.
///
/// The returned future is a named type, so layers can hold it in their own response futures
/// without boxing.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tollgate_core::body::{collect_limited, BodyError};
///
/// # futures_executor::block_on(async {
/// let bytes = collect_limited(Full::new(Bytes::from_static(b"{}")), 16).await.unwrap();
/// assert_eq!(bytes, "{}");
/// let error = collect_limited(Full::new(Bytes::from_static(b"0123456789")), 4).await.unwrap_err();
/// assert!(matches!(error, BodyError::TooLarge { limit: 4 }));
/// # });
/// ```
pub fn collect_limited<B>(body: B, limit: usize) -> Collect<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let hint = body.size_hint();
    Collect {
        body,
        limit,
        declared_too_large: hint.lower() > limit as u64,
        expected: hint.upper().unwrap_or(0).min(limit as u64) as usize,
        first: None,
        joined: BytesMut::new(),
        len: 0,
    }
}

pin_project! {
    /// The future of [`collect_limited`].
    pub struct Collect<B> {
        #[pin]
        body: B,
        limit: usize,
        declared_too_large: bool,
        expected: usize,
        first: Option<Bytes>,
        joined: BytesMut,
        len: usize,
    }
}

impl<B> fmt::Debug for Collect<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collect")
            .field("limit", &self.limit)
            .field("read", &self.len)
            .finish_non_exhaustive()
    }
}

impl<B> std::future::Future for Collect<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, BodyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if *this.declared_too_large {
            return Poll::Ready(Err(BodyError::TooLarge { limit: *this.limit }));
        }
        loop {
            let Some(frame) = std::task::ready!(this.body.as_mut().poll_frame(cx)) else {
                let bytes = match this.first.take() {
                    Some(first) => first,
                    None => std::mem::take(this.joined).freeze(),
                };
                return Poll::Ready(Ok(bytes));
            };
            let frame = frame.map_err(|error| BodyError::Read(error.into()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry nothing a chat request needs
            };
            *this.len += data.len();
            if *this.len > *this.limit {
                return Poll::Ready(Err(BodyError::TooLarge { limit: *this.limit }));
            }
            if this.joined.is_empty() && this.first.is_none() {
                *this.first = Some(data);
                continue;
            }
            if let Some(first) = this.first.take() {
                this.joined
                    .reserve((*this.expected).max(first.len() + data.len()));
                this.joined.extend_from_slice(&first);
            }
            this.joined.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    #[test]
    fn buffered_bytes_come_out_once_with_their_exact_size() {
        let mut body = Body::from("hello");
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(5));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let frame = Pin::new(&mut body).poll_frame(&mut cx);
        let Poll::Ready(Some(Ok(frame))) = frame else {
            panic!("no frame: {frame:?}");
        };
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));

        let empty = Body::empty();
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}
