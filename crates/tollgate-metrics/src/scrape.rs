//! `Scrape`: the `/metrics` endpoint.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use tollgate_core::{Body, ErrorKind, GatewayError};

use crate::TextRecorder;

/// Answers `GET` (and `HEAD`) with the Prometheus text exposition a renderer writes; other
/// methods get a 405 envelope. Mount it where the scraper looks (`/metrics`).
///
/// ```
/// use http::Request;
/// use tollgate_core::Body;
/// use tollgate_metrics::{Scrape, TextRecorder};
/// use tower::ServiceExt;
///
/// # tokio_test::block_on(async {
/// let recorder = TextRecorder::new();
/// let scrape = Scrape::text(&recorder);
/// let response = scrape.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
/// # });
/// ```
#[derive(Clone)]
pub struct Scrape {
    render: Arc<dyn Fn() -> String + Send + Sync>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Scrape {
    /// Serves what `render` writes at each scrape (Prometheus text, format 0.0.4).
    ///
    /// ```
    /// let scrape = tollgate_metrics::Scrape::new(|| "up 1\n".to_owned());
    /// # let _ = scrape;
    /// ```
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Scrape {
            render: Arc::new(render),
        }
    }

    /// Serves `recorder`'s metrics.
    pub fn text(recorder: &TextRecorder) -> Self {
        let recorder = recorder.clone();
        Scrape::new(move || recorder.render())
    }
}

impl<B> tower_service::Service<Request<B>> for Scrape {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let error = GatewayError::new(
                ErrorKind::MethodNotAllowed,
                "The metrics are read with GET.",
            );
            let mut response = error.into_response().map(Body::new);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ready(Ok(response));
        }
        let text = if method == Method::HEAD {
            String::new()
        } else {
            (self.render)()
        };
        let mut response = Response::new(Body::from(text));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        ready(Ok(response))
    }
}
