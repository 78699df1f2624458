//! The upstream service against the testkit mock: headers, error normalization, retries.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, Request};
use http_body_util::BodyExt;
use serde_json::json;
use tollgate_core::{Body, BodyLimit, ChatRequest, Fallbacks, ModelInfo};
use tollgate_testkit::{Behavior, Fault, MockUpstream, body_json};
use tollgate_upstream::{InvalidApiKey, RetryBudget, RetryPolicy, Upstream, UpstreamBuilder};
use tower::ServiceExt;

fn upstream(mock: &MockUpstream, retries: u32) -> Upstream {
    upstream_with(mock, RetryPolicy::default().with_max_retries(retries))
}

fn upstream_with(mock: &MockUpstream, retry: RetryPolicy) -> Upstream {
    builder(mock)
        .retry(retry.with_base_delay(Duration::from_millis(10)))
        .build()
}

/// The provider key, and the mock's `x-mock` header (a real provider never needs it).
fn builder(mock: &MockUpstream) -> UpstreamBuilder {
    Upstream::builder(&mock.url())
        .unwrap()
        .api_key("sk-provider")
        .unwrap()
        .forward_header(HeaderName::from_static("x-mock"))
        .unwrap()
}

fn request(model: &str, mock: Option<&str>) -> Request<Body> {
    let body = Bytes::from(
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    let mut request = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-client-secret")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("x-keep-me", "1")
        .body(Body::from(body.clone()))
        .unwrap();
    if let Some(mock) = mock {
        request
            .headers_mut()
            .insert("x-mock", mock.parse().unwrap());
    }
    request
        .extensions_mut()
        .insert(ChatRequest::parse(body).unwrap());
    request
        .extensions_mut()
        .insert(ModelInfo::new(model.to_owned(), 1000, 100));
    // What the catalog resolves for "m": its configured fallback.
    if model == "m" {
        request
            .extensions_mut()
            .insert(Fallbacks([ModelInfo::new("m-backup", 1000, 100)].into()));
    }
    request
}

#[tokio::test]
async fn the_provider_key_replaces_the_clients_and_hop_by_hop_headers_stay_behind() {
    let mock = MockUpstream::start().await;
    // Both allowed: the one the client's `Connection` header names stays behind all the same.
    let upstream = builder(&mock)
        .forward_header(HeaderName::from_static("x-keep-me"))
        .unwrap()
        .forward_header(HeaderName::from_static("x-drop-me"))
        .unwrap()
        .build();
    let response = upstream.oneshot(request("m", None)).await.unwrap();
    assert_eq!(response.status(), 200);
    let call = mock.calls().pop().unwrap();
    assert_eq!(call.header("authorization"), Some("Bearer sk-provider"));
    assert_eq!(call.header("x-keep-me"), Some("1"));
    assert_eq!(call.header("x-drop-me"), None, "named in Connection");
    assert!(
        call.header("connection")
            .is_none_or(|value| !value.contains("x-drop-me"))
    );
}

#[tokio::test]
async fn an_upstream_4xx_is_normalized_into_the_envelope() {
    let mock = MockUpstream::start().await;
    let response = upstream(&mock, 3)
        .oneshot(request("m", Some("status=400")))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["details"]["upstream_status"], 400);
    assert_eq!(mock.calls().len(), 1, "a 4xx is never retried");

    let response = upstream(&mock, 0)
        .oneshot(request("m", Some("status=401")))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        502,
        "a refused provider key is not the client's fault"
    );
}

#[tokio::test]
async fn a_short_upstream_retry_after_is_waited_for() {
    let mock = MockUpstream::builder()
        .model_behavior_times(
            "m",
            Behavior::fault(Fault::Status {
                status: 429,
                retry_after: Some(1),
            }),
            1,
        )
        .start()
        .await;
    let started = Instant::now();
    let response = upstream(&mock, 2)
        .oneshot(request("m", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "honoured the upstream's retry-after"
    );
    assert_eq!(mock.calls_for("m").len(), 2);
}

#[tokio::test]
async fn a_connection_reset_after_sending_is_never_sent_again() {
    let mock = MockUpstream::builder()
        .model_behavior("m", Behavior::fault(Fault::ResetBeforeHead))
        .start()
        .await;
    let response = upstream(&mock, 2)
        .oneshot(request("m", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(body_json(response).await["error"]["type"], "provider_error");
    assert_eq!(
        mock.calls().len(),
        1,
        "the provider may have run it: not re-sent, no fallback"
    );
}

#[tokio::test]
async fn a_failing_model_falls_back_after_its_retries() {
    let mock = MockUpstream::builder()
        .model_behavior("m", Behavior::status(503))
        .start()
        .await;
    let response = upstream(&mock, 2)
        .oneshot(request("m", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-model"], "m-backup");
    assert_eq!(
        response.extensions().get::<ModelInfo>().map(|m| &*m.id),
        Some("m-backup")
    );
    assert_eq!(
        mock.calls_for("m").len(),
        3,
        "the first attempt and two retries"
    );
    assert_eq!(mock.calls_for("m-backup").len(), 1);
}

#[tokio::test]
async fn a_long_upstream_retry_after_moves_to_the_fallback_at_once() {
    let mock = MockUpstream::builder()
        .model_behavior(
            "m",
            Behavior::fault(Fault::Status {
                status: 429,
                retry_after: Some(60),
            }),
        )
        .start()
        .await;
    let started = Instant::now();
    let response = upstream(&mock, 2)
        .oneshot(request("m", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-model"], "m-backup");
    assert_eq!(mock.calls_for("m").len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_clients_accept_encoding_is_not_forwarded() {
    let mock = MockUpstream::start().await;
    let mut request = request("m", None);
    request
        .headers_mut()
        .insert("accept-encoding", "gzip, br".parse().unwrap());
    upstream(&mock, 0).oneshot(request).await.unwrap();
    assert_eq!(mock.calls().pop().unwrap().header("accept-encoding"), None);
}

#[tokio::test]
async fn a_mid_stream_abort_is_not_retried() {
    let mock = MockUpstream::start().await;
    let mut body = request("m", Some("abort-after=1"));
    let streaming = Bytes::from(json!({"model": "m", "messages": [], "stream": true}).to_string());
    *body.body_mut() = Body::from(streaming.clone());
    body.extensions_mut()
        .insert(ChatRequest::parse(streaming).unwrap());
    let response = upstream(&mock, 3).oneshot(body).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the head arrived: the response is passed on"
    );
    assert!(
        response.into_body().collect().await.is_err(),
        "the stream breaks for the client"
    );
    assert_eq!(mock.calls().len(), 1, "never a retry once the body started");
}

#[tokio::test]
async fn an_empty_retry_budget_stops_retries() {
    let mock = MockUpstream::builder()
        .model_behavior("m", Behavior::status(503))
        .start()
        .await;
    let empty = RetryBudget::default()
        .with_ratio(0.0)
        .with_min_per_second(0);
    let response = upstream_with(
        &mock,
        RetryPolicy::default()
            .with_max_retries(3)
            .with_budget(empty),
    )
    .oneshot(request("m", None))
    .await
    .unwrap();
    assert_eq!(response.status(), 200, "the fallback still serves");
    assert_eq!(
        mock.calls_for("m").len(),
        1,
        "no retry: the budget is empty"
    );
    assert_eq!(mock.calls_for("m-backup").len(), 1);
}

#[tokio::test]
async fn a_retry_budget_is_shared_by_all_requests() {
    let mock = MockUpstream::builder()
        .model_behavior("solo", Behavior::status(503))
        .start()
        .await;
    // Each request deposits half a retry: the second request may retry once, the first not.
    let half = RetryBudget::default()
        .with_ratio(0.5)
        .with_min_per_second(0)
        .with_ttl(Duration::from_secs(60));
    let upstream = upstream_with(
        &mock,
        RetryPolicy::default().with_max_retries(3).with_budget(half),
    );
    let first = upstream
        .clone()
        .oneshot(request("solo", None))
        .await
        .unwrap();
    assert_eq!(first.status(), 502);
    assert_eq!(mock.calls_for("solo").len(), 1, "half a retry buys none");
    let second = upstream.oneshot(request("solo", None)).await.unwrap();
    assert_eq!(second.status(), 502);
    assert_eq!(
        mock.calls_for("solo").len(),
        3,
        "the second request retried once, then the budget was spent"
    );
}

#[test]
fn an_api_key_that_cannot_be_a_header_is_an_error() {
    let builder = || Upstream::builder("http://127.0.0.1:9").unwrap();
    let error = builder().api_key("sk-secret\n").unwrap_err();
    assert_eq!(error, InvalidApiKey);
    assert!(
        !error.to_string().contains("sk-secret"),
        "the key stays out of the message"
    );
    assert!(builder().api_key("sk-\0").is_err());
    assert!(builder().api_key("sk-provider").is_ok());
}

/// A body no earlier layer read (a passthrough route's) was read without a time limit: a
/// client that declared a body and never sent it held the request open for good.
#[tokio::test]
async fn an_unread_body_that_never_arrives_is_a_408_and_never_sent() {
    let mock = MockUpstream::start().await;
    let upstream = builder(&mock)
        .body_limit(BodyLimit::default().with_read_timeout(Duration::from_millis(100)))
        .build();
    let request = Request::post("/v1/files")
        .body(Body::new(NeverEnds))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), upstream.oneshot(request))
        .await
        .expect("an answer before the client gives up")
        .unwrap();
    assert_eq!(response.status(), 408);
    assert_eq!(
        body_json(response).await["error"]["type"],
        "request_timeout"
    );
    assert!(mock.calls().is_empty(), "nothing reached the provider");
}

/// A request body whose client declared it and never sends a byte of it.
struct NeverEnds;

impl http_body::Body for NeverEnds {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}
