//! The mock upstream, driven by a real hyper client over TCP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tollgate_testkit::{Behavior, MockUpstream, Outcome, body_json, body_text, chat_request};

async fn send(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    sender.send_request(request).await
}

fn chat(body: Value, mock: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = chat_request(&body);
    let headers = request.headers_mut();
    headers.insert("host", "mock".parse().unwrap());
    headers.insert("authorization", "Bearer provider-key".parse().unwrap());
    if let Some(mock) = mock {
        headers.insert("x-mock", mock.parse().unwrap());
    }
    request
}

fn hello(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the test suite"}],
        "stream": stream,
        "stream_options": {"include_usage": stream},
    })
}

#[tokio::test]
async fn json_completion_with_usage_from_the_input() {
    let upstream = MockUpstream::start().await;
    let response = send(upstream.addr(), chat(hello("gpt-5.4", false), None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = body_json(response).await;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-5.4");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the tollgate mock upstream."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // 27 bytes of text -> 7 tokens, + 3 for the one message; 6 reply words.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16})
    );

    let calls = upstream.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/chat/completions");
    assert_eq!(calls[0].model.as_deref(), Some("gpt-5.4"));
    assert_eq!(
        calls[0].header("authorization"),
        Some("Bearer provider-key")
    );
    assert_eq!(calls[0].json().unwrap()["messages"][0]["role"], "user");
    assert_eq!(
        calls[0].wait_outcome(Duration::from_secs(1)).await,
        Outcome::Completed
    );
}

#[tokio::test]
async fn max_tokens_caps_the_reply() {
    let upstream = MockUpstream::start().await;
    let mut body = hello("gpt-5.4", false);
    body["max_tokens"] = json!(2);
    let body = body_json(send(upstream.addr(), chat(body, None)).await.unwrap()).await;
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from ");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn stream_has_role_word_finish_usage_and_done_events() {
    let upstream = MockUpstream::builder().reply("one two").start().await;
    let response = send(upstream.addr(), chat(hello("gpt-5.4", true), None))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = body_text(response).await;
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 6, "{body}");
    let data: Vec<Value> = events[..5]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(data[1]["choices"][0]["delta"]["content"], "one ");
    assert_eq!(data[2]["choices"][0]["delta"]["content"], "two");
    assert_eq!(data[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[4]["choices"], json!([]));
    assert_eq!(data[4]["usage"]["completion_tokens"], 2);
    assert_eq!(events[5], "data: [DONE]");
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_chunk() {
    let upstream = MockUpstream::start().await;
    let body = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let body = body_text(send(upstream.addr(), chat(body, None)).await.unwrap()).await;
    assert!(!body.contains("usage"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn chunks_are_sent_after_the_configured_delay() {
    let upstream = MockUpstream::builder()
        .chunks(4)
        .chunk_delay(Duration::from_millis(40))
        .start()
        .await;
    let started = Instant::now();
    let response = send(upstream.addr(), chat(hello("gpt-5.4", true), None))
        .await
        .unwrap();
    let _ = body_text(response).await;
    assert!(started.elapsed() >= Duration::from_millis(160));
    let sent = upstream.calls()[0].frames_sent_at();
    // role, 4 words, finish, usage, done
    assert_eq!(sent.len(), 8);
    for pair in sent[..5].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(40) && gap < Duration::from_millis(80),
            "{gap:?}"
        );
    }
}

#[tokio::test]
async fn injected_status_has_an_openai_error_body_and_retry_after() {
    let upstream = MockUpstream::start().await;
    let response = send(
        upstream.addr(),
        chat(hello("gpt-5.4", false), Some("status=429; retry-after=7")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = body_json(response).await;
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("429"));

    let response = send(
        upstream.addr(),
        chat(hello("gpt-5.4", false), Some("status=503")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn model_faults_can_hold_for_the_first_calls_only() {
    let upstream = MockUpstream::builder()
        .model_behavior_times("flaky", Behavior::status(502), 2)
        .model_behavior("broken", Behavior::status(500))
        .start()
        .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            send(upstream.addr(), chat(hello("flaky", false), None))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [502, 502, 200]);
    for _ in 0..2 {
        let status = send(upstream.addr(), chat(hello("broken", false), None))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 500);
    }
    assert_eq!(upstream.calls_for("flaky").len(), 3);
    assert_eq!(upstream.calls_for("broken").len(), 2);
}

#[tokio::test]
async fn reset_before_head_fails_the_request_with_no_response() {
    let upstream = MockUpstream::start().await;
    let error = send(
        upstream.addr(),
        chat(hello("gpt-5.4", false), Some("reset")),
    )
    .await
    .unwrap_err();
    let io = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    assert_eq!(io, Some(std::io::ErrorKind::ConnectionReset), "{error:?}");
    let call = upstream
        .wait_for_call(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(call.outcome(), Outcome::Faulted);
}

#[tokio::test]
async fn abort_mid_stream_cuts_the_body_after_the_given_chunks() {
    let upstream = MockUpstream::start().await;
    let response = send(
        upstream.addr(),
        chat(hello("gpt-5.4", true), Some("abort-after=2")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(error)) => break error,
            None => panic!("the stream ended cleanly"),
        }
    };
    let io = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    assert_eq!(io, Some(std::io::ErrorKind::UnexpectedEof), "{error:?}");
    let received = String::from_utf8(received).unwrap();
    assert_eq!(
        received.matches("\"content\":\"").count(),
        3,
        "role chunk + 2 words: {received}"
    );
    assert!(!received.contains("[DONE]"));
    assert_eq!(upstream.calls()[0].outcome(), Outcome::Faulted);
}

#[tokio::test]
async fn slow_first_byte_delays_the_head() {
    let upstream = MockUpstream::start().await;
    let started = Instant::now();
    let response = send(
        upstream.addr(),
        chat(hello("gpt-5.4", false), Some("first-byte-delay-ms=150")),
    )
    .await
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_hanging_up_mid_stream_is_recorded() {
    let upstream = MockUpstream::builder()
        .chunks(50)
        .chunk_delay(Duration::from_millis(20))
        .start()
        .await;
    let response = send(upstream.addr(), chat(hello("gpt-5.4", true), None))
        .await
        .unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body); // the client goes away after two frames
    let call = upstream.calls().pop().unwrap();
    assert_eq!(
        call.wait_outcome(Duration::from_secs(2)).await,
        Outcome::ClientHungUp
    );
    assert!(call.frames_sent_at().len() < 50);
}

#[tokio::test]
async fn a_client_hanging_up_during_a_slow_first_byte_is_recorded() {
    let upstream = MockUpstream::start().await;
    let request = send(
        upstream.addr(),
        chat(hello("gpt-5.4", false), Some("first-byte-delay-ms=5000")),
    );
    let _ = tokio::time::timeout(Duration::from_millis(100), request).await;
    let call = upstream
        .wait_for_call(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        call.wait_outcome(Duration::from_secs(2)).await,
        Outcome::ClientHungUp
    );
}

#[tokio::test]
async fn models_are_listed_and_unknown_paths_are_404() {
    let upstream = MockUpstream::builder().models(["a", "b/c"]).start().await;
    let request = Request::get("/v1/models")
        .header("host", "mock")
        .body(Full::default())
        .unwrap();
    let body: Value = body_json(send(upstream.addr(), request).await.unwrap()).await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b/c"]);
    assert_eq!(body["object"], "list");

    let request = Request::post("/v1/nope")
        .header("host", "mock")
        .body(Full::default())
        .unwrap();
    let response = send(upstream.addr(), request).await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        body_text(response)
            .await
            .contains("Invalid URL (POST /v1/nope)")
    );
}

#[tokio::test]
async fn a_malformed_mock_header_is_a_400() {
    let upstream = MockUpstream::start().await;
    let response = send(
        upstream.addr(),
        chat(hello("gpt-5.4", false), Some("explode")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        body_text(response)
            .await
            .contains("unknown directive `explode`")
    );
}
