//! The `x-mock` directives beyond status and stream shape: in-stream errors and token details
//! on chat completions, and the caps on what a request can ask for.

mod common;

use std::time::Duration;

use common::{call, json_events};
use serde_json::{Value, json};
use tollgate_testkit::{Behavior, Fault, MockUpstream, Outcome, body_json, body_text};

fn chat(stream: bool) -> Value {
    json!({
        "model": "gpt-5.4",
        "messages": [{"role": "user", "content": "Say hello to the test suite"}],
        "stream": stream,
        "stream_options": {"include_usage": stream},
    })
}

async fn chat_json(upstream: &MockUpstream, mock: &str) -> Value {
    let response = call(upstream, "/v1/chat/completions", &chat(false), Some(mock)).await;
    assert_eq!(response.status(), 200);
    body_json(response).await
}

async fn chat_stream(upstream: &MockUpstream, mock: &str) -> String {
    body_text(call(upstream, "/v1/chat/completions", &chat(true), Some(mock)).await).await
}

#[tokio::test]
async fn a_chat_stream_can_fail_with_an_error_event() {
    let upstream = MockUpstream::start().await;
    let body = chat_stream(&upstream, "error-after=2").await;
    assert!(!body.contains("[DONE]"), "{body}");
    let data = json_events(&body);
    assert_eq!(data.len(), 4, "role, two words, error: {body}");
    assert_eq!(data[1]["choices"][0]["delta"]["content"], "Hello ");
    assert_eq!(
        data[3],
        json!({"error": {
            "message": "Injected fault: the mock upstream failed the stream; chunks sent: 2.",
            "type": "server_error",
            "param": null,
            "code": null,
        }})
    );
    assert_eq!(
        upstream.calls()[0]
            .wait_outcome(Duration::from_secs(1))
            .await,
        Outcome::Faulted
    );
}

#[tokio::test]
async fn an_error_after_more_chunks_than_the_reply_comes_after_the_last() {
    let upstream = MockUpstream::start().await;
    let body = chat_stream(&upstream, "error-after=18446744073709551615").await;
    let data = json_events(&body);
    assert_eq!(data.len(), 8, "role, six words, error: {body}");
    assert_eq!(data[7]["error"]["type"], "server_error");
}

#[tokio::test]
async fn an_abort_after_more_chunks_than_the_stream_has_never_comes() {
    let upstream = MockUpstream::start().await;
    let body = chat_stream(&upstream, "abort-after=18446744073709551615").await;
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
}

#[tokio::test]
async fn chat_usage_has_token_details_only_when_asked() {
    let upstream = MockUpstream::start().await;
    let body = chat_json(&upstream, "cached-tokens=6; reasoning-tokens=4").await;
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 6},
            "completion_tokens": 10,
            "completion_tokens_details": {"reasoning_tokens": 4},
            "total_tokens": 20,
        })
    );
    let body = chat_stream(&upstream, "reasoning-tokens=4").await;
    let usage = &json_events(body.strip_suffix("data: [DONE]\n\n").unwrap())[8]["usage"];
    assert_eq!(usage["prompt_tokens_details"], json!({"cached_tokens": 0}));
    assert_eq!(usage["completion_tokens"], 10);

    let body = chat_json(&upstream, "chunks=2").await;
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})
    );
}

#[tokio::test]
async fn a_request_asking_for_too_many_chunks_gets_the_cap() {
    let upstream = MockUpstream::start().await;
    let body = chat_json(&upstream, "chunks=5000000").await;
    assert_eq!(
        body["usage"]["completion_tokens"],
        Behavior::MAX_CHUNKS as u64
    );
    let body = chat_stream(&upstream, "chunks=5000000").await;
    assert_eq!(
        body.matches(r#""delta":{"content":""#).count(),
        Behavior::MAX_CHUNKS + 1,
        "the role chunk and the capped content chunks"
    );

    let body = chat_json(&upstream, "reasoning-tokens=99999999999999").await;
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        Behavior::MAX_REPORTED_TOKENS
    );
}

#[test]
fn delays_and_token_counts_are_clamped_to_their_caps() {
    let asked = Behavior::parse(
        "chunks=1001; chunk-delay-ms=10001; first-byte-delay-ms=999999999999; \
         cached-tokens=1000001; reasoning-tokens=18446744073709551615",
    )
    .unwrap();
    assert_eq!(
        asked,
        Behavior {
            chunks: Some(Behavior::MAX_CHUNKS),
            chunk_delay: Some(Behavior::MAX_CHUNK_DELAY),
            first_byte_delay: Some(Behavior::MAX_FIRST_BYTE_DELAY),
            cached_tokens: Some(Behavior::MAX_REPORTED_TOKENS),
            reasoning_tokens: Some(Behavior::MAX_REPORTED_TOKENS),
            fault: None,
        }
    );
    let at_the_caps =
        Behavior::parse("chunks=1000; chunk-delay-ms=10000; first-byte-delay-ms=120000").unwrap();
    assert_eq!(at_the_caps.chunks, Some(1000));
    assert_eq!(at_the_caps.chunk_delay, Some(Duration::from_secs(10)));
    assert_eq!(at_the_caps.first_byte_delay, Some(Duration::from_secs(120)));
    assert_eq!(
        Behavior::parse("error-after=7").unwrap().fault,
        Some(Fault::ErrorAfterChunks(7))
    );
}

#[tokio::test]
async fn a_status_past_u16_is_a_400_not_a_wrapped_status() {
    let upstream = MockUpstream::start().await;
    // 65936 is 400 once truncated to 16 bits.
    let response = call(
        &upstream,
        "/v1/chat/completions",
        &chat(false),
        Some("status=65936"),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(
        body_text(response)
            .await
            .contains("`status` 65936 is not an HTTP status")
    );
}

#[tokio::test]
async fn what_the_test_itself_configures_is_not_capped() {
    let upstream = MockUpstream::builder().chunks(1500).start().await;
    let body = body_json(call(&upstream, "/v1/chat/completions", &chat(false), None).await).await;
    assert_eq!(body["usage"]["completion_tokens"], 1500);
}
