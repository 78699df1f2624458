//! Serving a tower service (a gateway) over HTTP/1.1: the accept loop, the limits every
//! connection lives under, graceful shutdown, and a test server on an ephemeral loopback port.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tollgate_core::{Body, BoxError};

use crate::connection::{refuse, serve_connection};

/// Accepts the next connection, with TCP_NODELAY set: chunked responses stall ~40 ms per chunk
/// without it (Nagle's algorithm meets delayed ACKs).
///
/// An accept error (no file descriptor left, a connection reset while it waited) is logged and
/// retried after a pause that starts at 5 ms and doubles up to 1 s, so a full descriptor table
/// does not spin a core. [`serve`] (and so the testkit's servers and the example gateway)
/// accepts with it.
///
/// ```
/// use tokio::net::{TcpListener, TcpStream};
///
/// # tokio_test::block_on(async {
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let client = TcpStream::connect(listener.local_addr()?).await?;
/// let server = tollgate_testkit::accept(&listener).await;
/// assert!(server.nodelay()?);
/// assert_eq!(server.peer_addr()?, client.local_addr()?);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub async fn accept(listener: &TcpListener) -> TcpStream {
    let stream = with_backoff(|| async { listener.accept().await.map(|(stream, _peer)| stream) });
    let stream = stream.await;
    // Best effort: a socket that refuses the option is still served.
    let _ = stream.set_nodelay(true);
    stream
}

/// The first success of `attempt`, pausing after each failure: 5 ms, doubling up to 1 s.
async fn with_backoff<T, F, A>(mut attempt: A) -> T
where
    A: FnMut() -> F,
    F: Future<Output = io::Result<T>>,
{
    let mut pause = Duration::from_millis(5);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "accept failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// What a server allows each connection, and how long it waits for them at shutdown.
///
/// - **Header read timeout** (10 s): a request head must be complete within it, counted from
///   the accept for a connection's first request and from the first byte of each later one. A
///   client that connects and sends nothing, or sends its head a byte at a time, is closed
///   without an answer when it runs out.
/// - **Idle timeout** (60 s): a keep-alive connection that has sent nothing of its next
///   request since its last response is closed after it.
/// - **Max connections** (4096): a connection accepted beyond it is answered at once with a
///   503 `service_unavailable` envelope (`Retry-After: 1`, a request id) without its request
///   being read, and closed.
/// - **Shutdown grace** (30 s): at shutdown, idle and header-pending connections close at
///   once, a connection with a request in flight finishes its response and closes, and
///   whatever is still open after the grace is closed.
///
/// A request head is also limited to 64 KiB and 100 headers: a larger one gets hyper's own 431
/// with an empty body, as does a head hyper cannot parse a 400, before any service runs. A
/// request body and the response are not timed here: the stack's body read timeout
/// (`BodyLimit`) and the upstream's timeouts bound them.
///
/// ```
/// use std::time::Duration;
/// use tollgate_testkit::ConnectionLimits;
///
/// let limits = ConnectionLimits::default()
///     .with_header_read_timeout(Duration::from_secs(5))
///     .with_max_connections(10_000);
/// assert_eq!(limits.header_read_timeout(), Duration::from_secs(5));
/// assert_eq!(limits.idle_timeout(), Duration::from_secs(60));
/// assert_eq!(limits.max_connections(), 10_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ConnectionLimits {
    /// With `timeout` for a request head to arrive (10 s by default).
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// With `timeout` for a keep-alive connection to start its next request (60 s by default).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// With at most `max` connections open at once (4096 by default; at least 1).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// With `grace` for the requests in flight at shutdown to finish (30 s by default).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long a request head may take to arrive.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// How long a keep-alive connection may wait before starting its next request.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The most connections open at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long the requests in flight at shutdown may take to finish.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }
}

/// How a [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// The connections still busy when the shutdown grace ran out, closed mid-request.
    pub cut_off: usize,
}

/// Serves `service` over HTTP/1.1 on every connection `listener` accepts ([`accept`]: TCP_NODELAY,
/// backoff on accept errors), under `limits` (see [`ConnectionLimits`]), until `shutdown`
/// completes. Then it stops accepting, closes idle and header-pending connections at once,
/// lets the requests in flight finish within the shutdown grace, closes what is left, and
/// says how many it cut off.
///
/// Each connection serves its requests, one at a time, with its own clone of `service`, called
/// as soon as it is ready (a clone per request only when it is not ready at once).
///
/// Request bodies are boxed as [`tollgate_core::Body`]. A client that shuts down its write side
/// after sending its request still gets its answer (hyper's half-close): so a client that
/// hangs up before the response head does not cancel its request until the answer is written.
/// A connection the server ends while the client may still be sending (a body the service did
/// not read, a refusal) is drained for up to 2 s after the answer, so that closing it does not
/// reset the connection before the client reads the answer; one cut off by its clock is not.
///
/// ```
/// use std::convert::Infallible;
/// use tokio::net::TcpListener;
/// use tollgate_core::Body;
/// use tollgate_testkit::ConnectionLimits;
///
/// # tokio_test::block_on(async {
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let hello = tower::service_fn(|_request: http::Request<Body>| async {
///     Ok::<_, Infallible>(http::Response::new(Body::from("hi")))
/// });
/// // Serves until the shutdown future completes: here at once, so nothing is cut off.
/// let ended = tollgate_testkit::serve(listener, hello, ConnectionLimits::default(), async {}).await;
/// assert_eq!(ended.cut_off, 0);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> Shutdown
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Unpin
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            stream = accept(&listener) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let service = service.clone();
                    connections.spawn(serve_connection(stream, service, limits, stopping.clone(), slot));
                }
                Err(_) => {
                    connections.spawn(refuse(stream, limits.max_connections));
                }
            },
            // Reap finished connections so the set does not grow with every request.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(limits.shutdown_grace, drain).await;
    let cut_off = connections.len();
    connections.shutdown().await;
    Shutdown { cut_off }
}

/// A tower service served over HTTP/1.1 on 127.0.0.1 with [`serve`]; stops when dropped, or
/// gracefully with [`TestServer::shutdown`].
///
/// ```
/// use std::convert::Infallible;
/// use tollgate_core::Body;
/// use tollgate_testkit::TestServer;
///
/// # tokio_test::block_on(async {
/// let server = TestServer::start(tower::service_fn(|_request: http::Request<Body>| async {
///     Ok::<_, Infallible>(http::Response::new(Body::from("hi")))
/// }))
/// .await;
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// # });
/// ```
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    task: JoinHandle<Shutdown>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// Serves `service` under the default [`ConnectionLimits`].
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start<S, B>(service: S) -> TestServer
    where
        S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
            + Unpin
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        TestServer::start_with(service, ConnectionLimits::default()).await
    }

    /// Serves `service` under `limits`.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::time::Duration;
    /// use tollgate_core::Body;
    /// use tollgate_testkit::{ConnectionLimits, TestServer};
    ///
    /// # tokio_test::block_on(async {
    /// let hello = tower::service_fn(|_request: http::Request<Body>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Body::from("hi")))
    /// });
    /// let limits = ConnectionLimits::default().with_idle_timeout(Duration::from_secs(1));
    /// let server = TestServer::start_with(hello, limits).await;
    /// assert_eq!(server.shutdown().await.cut_off, 0);
    /// # });
    /// ```
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start_with<S, B>(service: S, limits: ConnectionLimits) -> TestServer
    where
        S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
            + Unpin
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind an ephemeral loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(listener, service, limits, shutdown));
        TestServer {
            addr,
            task,
            stop: Some(stop),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the server down gracefully (see [`serve`]) and says how it ended.
    ///
    /// # Panics
    /// If the server's task panicked.
    pub async fn shutdown(mut self) -> Shutdown {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("the server task ran to its end")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use http_body_util::{BodyExt, Full};

    use super::*;

    /// With no descriptor left, accept fails at once every time: without the backoff the loop
    /// would retry millions of times a second.
    #[tokio::test]
    async fn accept_errors_back_off_instead_of_spinning() {
        let attempts = AtomicUsize::new(0);
        let failing = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            // Yield like a real accept would, so the timeout below can fire even without a pause.
            tokio::task::yield_now().await;
            Err::<(), _>(io::Error::from_raw_os_error(24)) // EMFILE
        };
        let waited = tokio::time::timeout(Duration::from_millis(400), with_backoff(failing)).await;
        assert!(waited.is_err(), "an attempt cannot succeed");
        // 5 + 10 + 20 + 40 + 80 + 160 ms of pauses fit in 400 ms: seven attempts.
        let attempts = attempts.load(Ordering::Relaxed);
        assert!((5..=8).contains(&attempts), "{attempts} attempts");
    }

    /// Ready on its second poll after each call (waking its task on the first), for one call;
    /// a clone starts unpolled. So the connection's instance serves every other request
    /// itself, and for the others a clone waits and serves.
    #[derive(Default)]
    struct ReadyOnSecondPoll {
        polled: bool,
        ready: bool,
    }

    impl Clone for ReadyOnSecondPoll {
        fn clone(&self) -> Self {
            ReadyOnSecondPoll::default()
        }
    }

    impl tower::Service<Request<Body>> for ReadyOnSecondPoll {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.ready = std::mem::replace(&mut self.polled, true);
            if self.ready {
                return Poll::Ready(Ok(()));
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            assert!(self.ready, "called before it was ready");
            (self.polled, self.ready) = (false, false);
            std::future::ready(Ok(Response::new(Body::from("served"))))
        }
    }

    #[tokio::test]
    async fn a_service_not_ready_at_once_still_serves_every_request_of_a_connection() {
        let server = TestServer::start(ReadyOnSecondPoll::default()).await;
        let stream = TcpStream::connect(server.addr()).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        for _ in 0..3 {
            let request = Request::get("/")
                .header("host", "test")
                .body(Full::new(Bytes::new()));
            let response = tokio::time::timeout(
                Duration::from_secs(5),
                sender.send_request(request.unwrap()),
            )
            .await
            .expect("answered")
            .unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "served");
        }
    }
}
