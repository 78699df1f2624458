//! The body is read once, under a limit, and its parse is shared through the extensions.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::BodyExt;
use tollgate_core::body::BodyError;
use tollgate_core::{Body, BodyLimit, ChatRequest, buffer_chat_request};

/// Yields `chunks` one frame at a time (forever once they run out, if `endless`), counting polls.
struct CountingBody {
    chunks: Vec<Bytes>,
    endless: bool,
    declared_length: Option<u64>,
    polls: Arc<AtomicUsize>,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.endless {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b' '; 1024])))));
        }
        if self.chunks.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(self.chunks.remove(0)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // What hyper derives from a Content-Length header.
        self.declared_length.map_or_else(
            http_body::SizeHint::default,
            http_body::SizeHint::with_exact,
        )
    }
}

fn counting(chunks: &[&'static str], endless: bool) -> (Body, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let body = CountingBody {
        chunks: chunks
            .iter()
            .map(|c| Bytes::from_static(c.as_bytes()))
            .collect(),
        endless,
        declared_length: None,
        polls: polls.clone(),
    };
    (Body::new(body), polls)
}

#[tokio::test]
async fn two_body_aware_layers_share_one_read_and_one_parse() {
    let (body, polls) = counting(&[r#"{"model":"gpt-5.4","#, r#""messages":[]}"#], false);
    let request = Request::new(body);

    // The first layer reads the body: two data frames and the end.
    let (request, first) = buffer_chat_request(request, BodyLimit::default().with_max_bytes(1024))
        .await
        .unwrap();
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    let first = first.unwrap();

    // The second layer gets the memo: no poll of the original body, the same parse.
    let (request, second) = buffer_chat_request(request, BodyLimit::default().with_max_bytes(1024))
        .await
        .unwrap();
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    let second = second.unwrap();
    assert_eq!(second.model(), Some("gpt-5.4"));
    assert!(
        std::ptr::eq(first.body().as_ptr(), second.body().as_ptr()),
        "same bytes, not a copy"
    );

    // The inner service still receives the whole body.
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, r#"{"model":"gpt-5.4","messages":[]}"#);
}

#[tokio::test]
async fn a_parse_error_is_memoized_and_the_request_stays_usable() {
    let (body, polls) = counting(&["{nope"], false);
    let (request, parsed) = buffer_chat_request(
        Request::new(body),
        BodyLimit::default().with_max_bytes(1024),
    )
    .await
    .unwrap();
    assert!(parsed.is_err());
    let polls_after_first = polls.load(Ordering::SeqCst);
    let (request, again) = buffer_chat_request(request, BodyLimit::default().with_max_bytes(1024))
        .await
        .unwrap();
    assert_eq!(again.unwrap_err(), parsed.unwrap_err());
    assert_eq!(polls.load(Ordering::SeqCst), polls_after_first);
    assert!(request.extensions().get::<ChatRequest>().is_none());
    assert_eq!(
        request.into_body().collect().await.unwrap().to_bytes(),
        "{nope"
    );
}

#[tokio::test]
async fn an_endless_body_stops_being_read_at_the_limit() {
    let (body, polls) = counting(&[], true);
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        buffer_chat_request(
            Request::new(body),
            BodyLimit::default().with_max_bytes(10 * 1024),
        ),
    )
    .await
    .expect("returns promptly");
    assert!(matches!(result, Err(BodyError::TooLarge { limit: 10240 })));
    // 10 frames fit the limit, the 11th crosses it, and nothing is read after that.
    assert_eq!(polls.load(Ordering::SeqCst), 11);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Sends one frame, then nothing: a client that stalls mid-body.
struct StalledBody {
    sent: bool,
}

impl http_body::Body for StalledBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent {
            return Poll::Pending;
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"model\":")))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_slower_than_the_read_timeout_fails() {
    let limit = BodyLimit::default().with_read_timeout(Duration::from_secs(5));
    let request = Request::new(Body::new(StalledBody { sent: false }));
    let error = buffer_chat_request(request, limit).await.unwrap_err();
    assert!(matches!(error, BodyError::TimedOut { after } if after == Duration::from_secs(5)));
    let gateway = tollgate_core::GatewayError::from(&error);
    assert_eq!(gateway.status(), 408);
    assert_eq!(gateway.kind.type_str(), "request_timeout");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_fails_before_any_read() {
    let polls = Arc::new(AtomicUsize::new(0));
    let body = CountingBody {
        chunks: vec![Bytes::from(vec![b' '; 2048])],
        endless: false,
        declared_length: Some(2048),
        polls: polls.clone(),
    };
    let error = buffer_chat_request(
        Request::new(Body::new(body)),
        BodyLimit::default().with_max_bytes(1024),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, BodyError::TooLarge { limit: 1024 }));
    assert_eq!(polls.load(Ordering::SeqCst), 0);
}
