//! A minimal forwarding service, to put a layer under test in front of the mock upstream.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tollgate_core::{Body, ResponseBody};

/// Forwards every request to `base` (path and query kept) and answers with the upstream's
/// response, streamed; a connection failure is a bare 502. Not a production upstream client:
/// no retries, no header hygiene — just enough to test layers over real TCP.
///
/// ```
/// use tollgate_testkit::{Forward, MockUpstream};
///
/// # tokio_test::block_on(async {
/// let upstream = MockUpstream::start().await;
/// let forward = Forward::to(&upstream.url());
/// # let _ = forward;
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Forward {
    base: String,
    client: Client<HttpConnector, Body>,
}

impl Forward {
    /// Forwards to `base`, such as `http://127.0.0.1:PORT`.
    pub fn to(base: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Forward {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl tower::Service<Request<Body>> for Forward {
    type Response = Response<ResponseBody<Incoming>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{path}", self.base);
        let client = self.client.clone();
        Box::pin(async move {
            match uri.parse() {
                Ok(uri) => *request.uri_mut() = uri,
                Err(_) => return Ok(bad_gateway()),
            }
            Ok(match client.request(request).await {
                Ok(response) => response.map(ResponseBody::inner),
                Err(_) => bad_gateway(),
            })
        })
    }
}

fn bad_gateway() -> Response<ResponseBody<Incoming>> {
    let mut response = Response::new(ResponseBody::full(Bytes::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
