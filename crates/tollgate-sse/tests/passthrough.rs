//! SsePassthroughLayer end to end over TCP: testkit mock upstream → a minimal forwarding
//! service → the layer → a test server → a real hyper client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tollgate_core::{Body, Paths};
use tollgate_sse::{
    ChatStreamSummary, Event, SseObserver, SseObservers, SsePassthroughLayer, StreamEnd,
};
use tollgate_testkit::{Forward, MockUpstream, Outcome, TestServer, body_json, body_text};
use tower::ServiceBuilder;

/// What a test observer saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<(ChatStreamSummary, Option<StreamEnd>)>>);

impl SseObserver for Seen {
    fn on_event(&mut self, event: &Event<'_>) {
        self.0.lock().unwrap().0.observe(event);
    }
    fn on_end(&mut self, end: StreamEnd) {
        self.0.lock().unwrap().1 = Some(end);
    }
}

impl Seen {
    fn summary(&self) -> ChatStreamSummary {
        self.0.lock().unwrap().0.clone()
    }
    fn end(&self) -> Option<StreamEnd> {
        self.0.lock().unwrap().1
    }
    async fn wait_end(&self) -> Option<StreamEnd> {
        for _ in 0..200 {
            if let Some(end) = self.end() {
                return Some(end);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

/// A gateway: the layer over the testkit's forwarder to the mock, with `seen` registered as an
/// observer of every request.
async fn gateway(upstream: &MockUpstream, layer: SsePassthroughLayer, seen: Seen) -> TestServer {
    let forward = Forward::to(&upstream.url());
    let register = tower::util::MapRequestLayer::new(move |request: Request<Body>| {
        if let Some(observers) = request.extensions().get::<SseObservers>() {
            observers.register(seen.clone());
        }
        request
    });
    TestServer::start(
        ServiceBuilder::new()
            .layer(layer)
            .layer(register)
            .service(forward),
    )
    .await
}

async fn send(server: &TestServer, body: Value) -> Response<Incoming> {
    send_with(server, body, None).await
}

async fn send_with(server: &TestServer, body: Value, mock: Option<&str>) -> Response<Incoming> {
    send_to(server, "/v1/chat/completions", body, mock).await
}

async fn send_to(
    server: &TestServer,
    path: &str,
    body: Value,
    mock: Option<&str>,
) -> Response<Incoming> {
    let mut request = Request::post(path)
        .header("host", "gateway")
        .header("content-type", "application/json")
        .header("x-request-id", "req_sse");
    if let Some(mock) = mock {
        request = request.header("x-mock", mock);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    tollgate_testkit::send(server.addr(), request)
        .await
        .unwrap()
}

fn chat(stream: bool, include_usage: Option<bool>) -> Value {
    let mut body = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream});
    if let Some(include) = include_usage {
        body["stream_options"] = json!({"include_usage": include});
    }
    body
}

#[tokio::test]
async fn a_stream_passes_with_its_headers_and_observers_see_usage() {
    let upstream = MockUpstream::builder().reply("one two three").start().await;
    let seen = Seen::default();
    let server = gateway(&upstream, SsePassthroughLayer::new(), seen.clone()).await;
    let response = send(&server, chat(true, Some(true))).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert!(response.headers().get("content-length").is_none());
    let body = body_text(response).await;
    assert!(
        body.contains("\"usage\":{\"completion_tokens\":3"),
        "{body}"
    );
    assert!(body.ends_with("data: [DONE]\n\n"));
    assert_eq!(seen.wait_end().await, Some(StreamEnd::Completed));
    let summary = seen.summary();
    assert_eq!(summary.usage.unwrap().completion_tokens, 3);
    assert_eq!(summary.finish_reasons, ["stop"]);
    assert!(summary.done);
}

#[tokio::test]
async fn json_responses_pass_untouched() {
    let upstream = MockUpstream::start().await;
    let server = gateway(&upstream, SsePassthroughLayer::new(), Seen::default()).await;
    let response = send(&server, chat(false, None)).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("x-accel-buffering").is_none());
    let body: Value = body_json(response).await;
    assert_eq!(body["object"], "chat.completion");
}

#[tokio::test]
async fn usage_is_injected_for_accounting_and_stripped_for_the_client() {
    let upstream = MockUpstream::builder().reply("one two").start().await;
    let seen = Seen::default();
    let server = gateway(
        &upstream,
        SsePassthroughLayer::new().inject_usage(true),
        seen.clone(),
    )
    .await;
    let body = body_text(send(&server, chat(true, None)).await).await;
    // The upstream was asked for usage...
    let call = upstream.calls().pop().unwrap();
    assert_eq!(
        call.json().unwrap()["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(
        call.header("content-length"),
        Some(call.body.len().to_string().as_str())
    );
    // ...the observers saw it...
    assert_eq!(seen.wait_end().await, Some(StreamEnd::Completed));
    assert_eq!(seen.summary().usage.unwrap().completion_tokens, 2);
    // ...and the client, who did not ask, did not.
    assert!(!body.contains("\"usage\":{"), "{body}");
    assert!(body.contains("\"content\":\"two\""), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"));

    // A client that asked for usage gets it, and nothing is spliced.
    let body = body_text(send(&server, chat(true, Some(true))).await).await;
    assert!(body.contains("\"usage\":{"), "{body}");
}

#[tokio::test]
async fn an_upstream_failure_mid_stream_ends_with_one_error_event() {
    let upstream = MockUpstream::builder()
        .reply("one two three four")
        .start()
        .await;
    let seen = Seen::default();
    let server = gateway(&upstream, SsePassthroughLayer::new(), seen.clone()).await;
    let response = send_with(&server, chat(true, Some(true)), Some("abort-after=2")).await;
    let text = body_text(response).await; // ends cleanly: no error reading the body
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 4, "{text}");
    let last: Value = serde_json::from_str(events[3].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        last,
        json!({"error": {"message": "The upstream provider failed in the middle of the stream. The response is incomplete; send the request again.", "type": "provider_error", "param": null, "code": null}, "request_id": "req_sse"})
    );
    assert_eq!(seen.wait_end().await, Some(StreamEnd::UpstreamFailed));
}

#[tokio::test]
async fn chunks_reach_the_client_within_10ms_of_being_sent() {
    let upstream = MockUpstream::builder()
        .chunks(6)
        .chunk_delay(Duration::from_millis(50))
        .start()
        .await;
    let server = gateway(&upstream, SsePassthroughLayer::new(), Seen::default()).await;
    let response = send(&server, chat(true, Some(true))).await;
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        received.push((Instant::now(), String::from_utf8(data.to_vec()).unwrap()));
    }
    let sent = upstream.calls()[0].frames_sent_at();
    // role + 6 words + finish + usage + [DONE]: one client frame per upstream frame.
    assert_eq!(sent.len(), 10);
    assert_eq!(
        received.len(),
        sent.len(),
        "no frame was coalesced or split"
    );
    for (index, (sent_at, (received_at, data))) in sent.iter().zip(&received).enumerate() {
        let delay = received_at.duration_since(*sent_at);
        assert!(
            delay < Duration::from_millis(10),
            "frame {index} took {delay:?}: {data}"
        );
    }
    let spacing = received[2].0 - received[1].0;
    assert!(
        spacing >= Duration::from_millis(45),
        "chunks really were 50 ms apart: {spacing:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alive_comments_fill_quiet_periods_at_event_boundaries() {
    let upstream = MockUpstream::builder()
        .chunks(2)
        .chunk_delay(Duration::from_secs(25))
        .start()
        .await;
    let layer = SsePassthroughLayer::new().keep_alive(Duration::from_secs(10));
    let server = gateway(&upstream, layer, Seen::default()).await;
    let body = body_text(send(&server, chat(true, None)).await).await;
    // 25 s of quiet before each word: two keep-alives each time, never inside an event.
    assert_eq!(body.matches(": keep-alive\n\n").count(), 4, "{body}");
    for event in body.split("\n\n").filter(|e| !e.is_empty()) {
        assert!(
            event == ": keep-alive" || event.starts_with("data: "),
            "{event:?}"
        );
    }
}

#[tokio::test]
async fn a_client_hanging_up_cancels_the_upstream_by_default() {
    let upstream = MockUpstream::builder()
        .chunks(100)
        .chunk_delay(Duration::from_millis(20))
        .start()
        .await;
    let seen = Seen::default();
    let server = gateway(&upstream, SsePassthroughLayer::new(), seen.clone()).await;
    let mut body = send(&server, chat(true, Some(true))).await.into_body();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let call = upstream.calls().pop().unwrap();
    assert_eq!(
        call.wait_outcome(Duration::from_secs(3)).await,
        Outcome::ClientHungUp
    );
    assert_eq!(seen.wait_end().await, Some(StreamEnd::ClientGone));
}

#[tokio::test]
async fn drain_on_disconnect_reads_the_upstream_to_its_end_for_accounting() {
    let upstream = MockUpstream::builder()
        .chunks(10)
        .chunk_delay(Duration::from_millis(10))
        .start()
        .await;
    let seen = Seen::default();
    let server = gateway(
        &upstream,
        SsePassthroughLayer::new().drain_on_disconnect(true),
        seen.clone(),
    )
    .await;
    let mut body = send(&server, chat(true, Some(true))).await.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let call = upstream.calls().pop().unwrap();
    assert_eq!(
        call.wait_outcome(Duration::from_secs(3)).await,
        Outcome::Completed
    );
    assert_eq!(seen.wait_end().await, Some(StreamEnd::Completed));
    assert_eq!(seen.summary().usage.unwrap().completion_tokens, 10);
}

fn responses_stream() -> Value {
    json!({"model": "gpt-5.4", "input": "Say hello", "stream": true})
}

/// The events of a stream: each one's `event:` name, if any, and its `data` as JSON.
fn events(text: &str) -> Vec<(Option<&str>, Value)> {
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let (name, data) = match event.strip_prefix("event: ") {
                Some(rest) => {
                    let (name, data) = rest.split_once('\n').unwrap();
                    (Some(name), data)
                }
                None => (None, event),
            };
            let data = data.strip_prefix("data: ").unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

/// Usage injection is for chat: a Responses API request goes upstream byte for byte, even on a
/// path configured for injection, and its named events come back as they were sent.
#[tokio::test]
async fn a_responses_stream_keeps_its_body_and_its_event_names() {
    let upstream = MockUpstream::builder().reply("one two three").start().await;
    let seen = Seen::default();
    let layer = SsePassthroughLayer::new()
        .inject_usage(true)
        .paths(Paths::new(["/v1/chat/completions", "/v1/responses"]));
    let server = gateway(&upstream, layer, seen.clone()).await;
    let body = responses_stream();
    let response = send_to(&server, "/v1/responses", body.clone(), None).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = body_text(response).await;
    let call = upstream.calls().pop().unwrap();
    assert_eq!(
        call.body,
        body.to_string(),
        "the upstream got the body unchanged"
    );
    let received = events(&text);
    let names: Vec<&str> = received.iter().map(|(name, _)| name.unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (index, (name, data)) in received.iter().enumerate() {
        assert_eq!(data["type"], name.unwrap());
        assert_eq!(data["sequence_number"], index);
    }
    assert_eq!(seen.wait_end().await, Some(StreamEnd::Completed));
    assert_eq!(seen.summary().usage.unwrap().completion_tokens, 3);

    // The same layer still injects usage into a chat stream.
    body_text(send(&server, chat(true, None)).await).await;
    let call = upstream.calls().pop().unwrap();
    assert_eq!(
        call.json().unwrap()["stream_options"]["include_usage"],
        true
    );
}

/// A Responses API client gets the Responses API's `error` event, numbered after the last
/// event it received: what its SDK raises on.
#[tokio::test]
async fn a_responses_stream_failing_mid_stream_ends_with_the_responses_error_event() {
    let upstream = MockUpstream::builder()
        .reply("one two three four")
        .start()
        .await;
    let seen = Seen::default();
    let server = gateway(&upstream, SsePassthroughLayer::new(), seen.clone()).await;
    let response = send_to(
        &server,
        "/v1/responses",
        responses_stream(),
        Some("abort-after=2"),
    )
    .await;
    let text = body_text(response).await; // ends cleanly: no error reading the body
    let received = events(&text);
    // Four opening events and two deltas, numbered 0 to 5, then the error.
    assert_eq!(received.len(), 7, "{text}");
    assert_eq!(received[5].1["sequence_number"], 5);
    let (name, data) = received.last().unwrap();
    assert_eq!(*name, Some("error"));
    assert_eq!(
        *data,
        json!({"type": "error", "code": "provider_error", "message": "The upstream provider failed in the middle of the stream. The response is incomplete; send the request again.", "param": null, "sequence_number": 6})
    );
    assert_eq!(seen.wait_end().await, Some(StreamEnd::UpstreamFailed));

    // Without observers (nothing else parses the stream), the error is numbered all the same.
    let server = TestServer::start(
        ServiceBuilder::new()
            .layer(SsePassthroughLayer::new())
            .service(Forward::to(&upstream.url())),
    )
    .await;
    let response = send_to(
        &server,
        "/v1/responses",
        responses_stream(),
        Some("abort-after=3"),
    )
    .await;
    let text = body_text(response).await;
    let (name, data) = events(&text).pop().unwrap();
    assert_eq!((name, &data["sequence_number"]), (Some("error"), &json!(7)));
}
