//! Serving a tower service (a gateway under test) on an ephemeral loopback port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tollgate_core::{Body, BoxError};
use tower::ServiceExt;

/// Accepts the next connection, with TCP_NODELAY set: chunked responses stall ~40 ms per chunk
/// without it (Nagle's algorithm meets delayed ACKs).
///
/// An accept error (no file descriptor left, a connection reset while it waited) is logged and
/// retried after a pause that starts at 5 ms and doubles up to 1 s, so a full descriptor table
/// does not spin a core. The testkit's servers and the example gateway accept with it.
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
    let mut pause = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // Best effort: a socket that refuses the option is still served.
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(error) => {
                tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "accept failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A tower service served over HTTP/1.1 on 127.0.0.1; stops when dropped.
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
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `service`, with request bodies boxed as [`tollgate_core::Body`] and TCP_NODELAY
    /// set on every connection.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start<S, B>(service: S) -> TestServer
    where
        S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
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
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    stream = accept(&listener) => {
                        let service = service
                            .clone()
                            .map_request(|request: Request<hyper::body::Incoming>| request.map(Body::new));
                        connections.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        TestServer { addr, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
