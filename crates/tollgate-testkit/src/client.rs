//! A one-request HTTP/1.1 client, for tests that need a real connection.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Sends `request` over a new TCP connection (TCP_NODELAY set) and returns the response head
/// with its streaming body. The request needs a `host` header; its URI is the path.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tollgate_testkit::{MockUpstream, send};
///
/// # tokio_test::block_on(async {
/// let upstream = MockUpstream::start().await;
/// let request = http::Request::get("/v1/models").header("host", "mock").body(Full::new(Bytes::new())).unwrap();
/// let response = send(upstream.addr(), request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// ```
pub async fn send(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to a loopback test server");
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    sender.send_request(request).await
}
