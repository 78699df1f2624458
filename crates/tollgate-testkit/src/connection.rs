//! One served connection: the clock that closes it when its client is too slow to send a
//! request head or stays idle too long, the way it ends at shutdown, and the refusal a client
//! gets when the server is full.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::timer::WaitTimer;
use tollgate_core::{Body, BoxError, ErrorKind, GatewayError};
use tower::ServiceExt;

use crate::self_wake::SelfWake;
use crate::serve::ConnectionLimits;

/// Where a connection is between its requests, and since when.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request head to be complete: since the connection was accepted (its
    /// first request), or since the first byte of a later one arrived.
    ReadingHead { since: Instant },
    /// A response was sent and nothing of the next request has arrived.
    Idle { since: Instant },
    /// The service has a request: its body and response run under the stack's own limits.
    Busy,
}

/// The phase of one connection, moved by its reads (the I/O side) and by its requests and
/// responses (the service side).
#[derive(Debug)]
struct Activity(Mutex<Phase>);

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity(Mutex::new(Phase::ReadingHead {
            since: Instant::now(),
        })))
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        if let Ok(mut phase) = self.0.lock() {
            *phase = change(*phase);
        }
    }

    fn phase(&self) -> Phase {
        self.0.lock().map_or(Phase::Busy, |phase| *phase)
    }

    fn bytes_arrived(&self) {
        self.update(|phase| match phase {
            Phase::Idle { .. } => Phase::ReadingHead {
                since: Instant::now(),
            },
            other => other,
        });
    }

    fn request_started(&self) {
        self.update(|_| Phase::Busy);
    }

    fn response_finished(&self) {
        self.update(|_| Phase::Idle {
            since: Instant::now(),
        });
    }

    fn is_busy(&self) -> bool {
        matches!(self.phase(), Phase::Busy)
    }

    /// When the connection is closed unless the phase changes first.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        match self.phase() {
            Phase::ReadingHead { since } => Some(since + limits.header_read_timeout()),
            Phase::Idle { since } => Some(since + limits.idle_timeout()),
            Phase::Busy => None,
        }
    }
}

/// The socket as hyper sees it: every read first checks the connection's deadline, so a
/// client that sends nothing, or a head a byte at a time, is cut off while hyper waits for it.
#[derive(Debug)]
struct WatchedStream {
    stream: TcpStream,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    /// Set for the phase's deadline, or an earlier one: a later deadline (each request moves
    /// it) waits until the timer fires, so that the timer wheel is not locked per request.
    timer: Option<WaitTimer>,
    /// The clock closed the connection.
    timed_out: bool,
}

impl WatchedStream {
    fn new(stream: TcpStream, activity: Arc<Activity>, limits: ConnectionLimits) -> Self {
        WatchedStream {
            stream,
            activity,
            limits,
            timer: None,
            timed_out: false,
        }
    }

    /// Whether the phase's deadline has passed; otherwise the timer wakes the reader at it.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.activity.deadline(&self.limits) else {
            return false;
        };
        let timer = self.timer.get_or_insert_with(|| WaitTimer::at(deadline));
        if timer.deadline() > deadline {
            timer.reset(deadline);
        }
        while timer.poll_expired(cx).is_ready() {
            if timer.deadline() >= deadline {
                return true;
            }
            // Fired for an earlier phase: wait out this one's deadline.
            timer.reset(deadline);
        }
        false
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            this.timed_out = true;
            let phase = this.activity.phase();
            tracing::debug!(
                ?phase,
                "closing a connection that sent no complete request in time"
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request head in time",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Marks the connection idle when its response body is done with (hyper drops it once the
/// last frame is out).
#[derive(Debug)]
struct FinishesResponse(Arc<Activity>);

impl Drop for FinishesResponse {
    fn drop(&mut self) {
        self.0.response_finished();
    }
}

/// A response future, pinned on the heap.
type BoxedFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The service as hyper calls it, one instance per connection. HTTP/1.1 serves a connection's
/// requests one at a time, so that instance serves every request it is ready for at once;
/// hyper-util's adapter clones the whole stack for each request instead (an allocation, and a
/// reference count taken and given back per layer, from whichever core runs the request).
struct PerConnection<S>(RefCell<S>);

impl<S, R, T> hyper::service::Service<R> for PerConnection<S>
where
    S: tower::Service<
            R,
            Response = T,
            Error = Infallible,
            Future = BoxedFuture<Result<T, Infallible>>,
        > + Clone
        + Send
        + 'static,
    R: Send + 'static,
    T: 'static,
{
    type Response = T;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, request: R) -> S::Future {
        // hyper calls one request at a time and never from within a call: the borrow is free.
        let mut service = self.0.borrow_mut();
        match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => service.call(request),
            // A stack that is not ready at once (a concurrency limit at its cap, say): a clone
            // waits for readiness with the connection's waker, as hyper-util's adapter does.
            Poll::Pending => boxed(service.clone().oneshot(request)),
        }
    }
}

/// `future`, pinned on the heap.
fn boxed<F>(future: F) -> BoxedFuture<F::Output>
where
    F: Future + Send + 'static,
{
    Box::pin(future)
}

pin_project! {
    /// A response body that marks its connection idle once sent.
    struct TrackedBody<B> {
        #[pin]
        body: B,
        finishes: FinishesResponse,
    }
}

impl<B> http_body::Body for TrackedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project()
            .body
            .poll_frame(cx)
            .map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The most bytes a request head (request line and headers) may have; a longer one is refused
/// with hyper's 431. Set explicitly because hyper's own bound, its read buffer size, only
/// applies when a head arrives in several reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves one accepted connection over HTTP/1.1 until it ends, its clock runs out, or the
/// server stops: then an idle or header-pending connection closes at once and a busy one
/// finishes its response first. `_slot` is the connection's place under the server's
/// connection cap, held until it closes.
pub(crate) async fn serve_connection<S, B>(
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Unpin
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let activity = Activity::new();
    let started = activity.clone();
    let finished = activity.clone();
    // The response future boxed so that the connection is `Unpin` and gives its socket back
    // when done; the service is not, as the connection keeps one instance of it.
    let service = service
        .map_request(move |request: Request<Incoming>| {
            started.request_started();
            request.map(Body::new)
        })
        .map_response(move |response: Response<B>| {
            let finishes = FinishesResponse(finished.clone());
            response.map(|body| TrackedBody { body, finishes })
        })
        .map_future(boxed);
    let io = TokioIo::new(WatchedStream::new(stream, activity.clone(), limits));
    let mut connection = hyper::server::conn::http1::Builder::new()
        // A client that shuts down its side after sending its request still gets the answer.
        .half_close(true)
        // The connection's own clock (see `WatchedStream`) times the head instead.
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(io, PerConnection(RefCell::new(service)));
    let self_wake = SelfWake::new();
    let mut serving = poll_fn(|cx| self_wake.poll(cx, |cx| connection.poll_without_shutdown(cx)));
    let stopped = tokio::select! {
        _ = &mut serving => false,
        _ = stop.wait_for(|stop| *stop) => true,
    };
    if stopped {
        if !activity.is_busy() {
            return; // idle or header-pending: closed at once
        }
        Pin::new(&mut connection).graceful_shutdown();
        let _ = poll_fn(|cx| self_wake.poll(cx, |cx| connection.poll_without_shutdown(cx))).await;
    }
    let socket = connection.into_parts().io.into_inner();
    // A client cut off by the clock gets no more time; any other gets to read its answer.
    if !socket.timed_out {
        close_lingering(socket.stream).await;
    }
}

/// How long a connection the server closes may take to read its last answer.
const LINGER: Duration = Duration::from_secs(2);

/// Closes `stream` the way a server should when the client may still be sending (a body the
/// server did not read, a request it refused unread): it sends its end of the connection,
/// then reads and discards what the client still sends for up to [`LINGER`]. Closing with
/// unread bytes would reset the connection, and a client's pending read with it, before the
/// client read the answer.
async fn close_lingering(mut stream: TcpStream) {
    let drain = async {
        stream.shutdown().await?;
        // On the heap, and only now: on the stack it would be part of every connection's
        // task, 8 KiB of its 9.6, for the whole life of the connection.
        let mut discarded = vec![0; 8192];
        while stream.read(&mut discarded).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Answers a connection the server has no room for with a 503 envelope (`Retry-After: 1`, a
/// fresh request id) without reading its request, then closes it (lingering, see
/// [`close_lingering`]).
pub(crate) async fn refuse(mut stream: TcpStream, max_connections: usize) {
    let request_id = uuid::Uuid::new_v4().to_string();
    tracing::warn!(
        request_id,
        max_connections,
        "connection refused: the server is at its connection limit"
    );
    let error = GatewayError::new(
        ErrorKind::ServiceUnavailable,
        "The gateway is serving as many connections as it allows. Retry after a short delay.",
    )
    .retry_after(Duration::from_secs(1));
    let body = error.to_json(Some(&request_id));
    let mut response = error.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, id);
    }
    let mut message = format!("HTTP/1.1 {}\r\n", response.status()).into_bytes();
    for (name, value) in response.headers() {
        message.extend_from_slice(name.as_str().as_bytes());
        message.extend_from_slice(b": ");
        message.extend_from_slice(value.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(&body);
    // A fresh socket's send buffer takes the answer at once; the timeout is for a client that
    // does not read at all.
    if tokio::time::timeout(LINGER, stream.write_all(&message))
        .await
        .is_ok()
    {
        close_lingering(stream).await;
    }
}
