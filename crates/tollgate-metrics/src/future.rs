use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::MetricsBody;
use crate::record::InFlight;

pin_project! {
    /// The response future of [`Metrics`](crate::Metrics): notes the response head, and hands
    /// the request's record to the body, which finishes it. Dropped before the head (the client
    /// went away), it records the request as `cancelled`.
    pub struct ResponseFuture<F> {
        #[pin]
        pub(crate) inner: F,
        pub(crate) in_flight: Option<Box<InFlight>>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<MetricsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(result.map(|response| match in_flight {
            Some(mut in_flight) => {
                in_flight.head(&response);
                response.map(|body| MetricsBody::new(body, in_flight))
            }
            None => response.map(MetricsBody::untracked),
        }))
    }
}
