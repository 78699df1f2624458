use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::record::{End, InFlight};

pin_project! {
    /// The response body of [`Metrics`](crate::Metrics): forwards every frame untouched, notes
    /// the first (the time to first token of a stream), and finishes the request's record at
    /// the end of the body, or as `cancelled` when dropped before it.
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        // Boxed: the record is large, and the body (like the future) is moved several times.
        in_flight: Option<Box<InFlight>>,
    }
}

impl<B> MetricsBody<B> {
    pub(crate) fn new(inner: B, in_flight: Box<InFlight>) -> Self
    where
        B: Body,
    {
        let mut body = MetricsBody {
            in_flight: Some(in_flight),
            inner,
        };
        // A server never polls a body that says it is over: finish now, not as a hang-up.
        if body.inner.is_end_stream() {
            body.finish(End::AtHead);
        }
        body
    }

    pub(crate) fn untracked(inner: B) -> Self {
        MetricsBody {
            inner,
            in_flight: None,
        }
    }

    fn finish(&mut self, end: End) {
        if let Some(mut in_flight) = self.in_flight.take() {
            in_flight.end(end);
        }
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.as_mut().project();
        let mut inner = this.inner;
        let polled = ready!(inner.as_mut().poll_frame(cx));
        let end = match &polled {
            Some(Ok(frame)) => {
                if let Some(in_flight) = this.in_flight
                    && frame.data_ref().is_some_and(Buf::has_remaining)
                {
                    in_flight.chunk();
                }
                // After its last frame a server may drop the body without polling it again.
                inner.is_end_stream().then_some(End::Complete)
            }
            Some(Err(_)) => Some(End::Failed),
            None => Some(End::Complete),
        };
        if let Some(end) = end
            && let Some(mut in_flight) = this.in_flight.take()
        {
            in_flight.end(end);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
