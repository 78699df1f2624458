//! The upstream's response body, held to the request's total timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tollgate_core::BoxError;
use tollgate_core::timer::WaitTimer;

use crate::errors;

pin_project! {
    /// The body of an upstream response: the provider's bytes as they arrive, cut with a
    /// [`GatewayError`](tollgate_core::GatewayError) (a 504-kind `timeout`) when the request's
    /// total timeout passes before the body ends, so a stream cannot outrun it. The SSE layer
    /// turns that error into the endpoint's terminal error event.
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        deadline: Instant,
        // Armed when the body first waits: one that is there at once, as most JSON answers
        // are, sets no timer, and the responses that carry it through the layers stay small.
        timer: Option<WaitTimer>,
        total: Duration,
        timed_out: bool,
    }
}

impl UpstreamBody {
    pub(crate) fn new(inner: Incoming, deadline: Instant, total: Duration) -> Self {
        UpstreamBody {
            inner,
            deadline,
            timer: None,
            total,
            timed_out: false,
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody").finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.timed_out {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(Into::into))),
            Poll::Pending => {
                let deadline = *this.deadline;
                let timer = this.timer.get_or_insert_with(|| WaitTimer::at(deadline));
                if timer.poll_expired(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.timed_out = true;
                let error = errors::timed_out("total", *this.total);
                Poll::Ready(Some(Err(Box::new(error))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
