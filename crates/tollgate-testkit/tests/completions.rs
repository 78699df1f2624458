//! `POST /v1/completions` (legacy): the JSON completion, the chunk stream, and faults.

mod common;

use std::time::Duration;

use common::{call, events, json_events, post, read_until_error};
use serde_json::{Value, json};
use tollgate_testkit::{DEFAULT_REPLY, MockUpstream, Outcome, body_json, body_text, send};

fn complete(prompt: Value, stream: bool) -> Value {
    json!({
        "model": "gpt-3.5-turbo-instruct",
        "prompt": prompt,
        "stream": stream,
        "stream_options": {"include_usage": stream},
    })
}

async fn prompt_tokens(upstream: &MockUpstream, prompt: Value) -> Value {
    let body =
        body_json(call(upstream, "/v1/completions", &complete(prompt, false), None).await).await;
    body["usage"]["prompt_tokens"].clone()
}

#[tokio::test]
async fn a_text_completion_with_usage_from_the_prompt() {
    let upstream = MockUpstream::start().await;
    let response = call(
        &upstream,
        "/v1/completions",
        &complete(json!("Say hello to the test suite"), false),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = body_json(response).await;
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"), "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(body["created"].is_u64());
    assert_eq!(body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(
        body["choices"],
        json!([{"text": DEFAULT_REPLY, "index": 0, "logprobs": null, "finish_reason": "stop"}])
    );
    // 27 bytes -> 7 tokens, with no per-message overhead; 6 reply words.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13})
    );

    let call = upstream.calls().pop().unwrap();
    assert_eq!(call.path, "/v1/completions");
    assert_eq!(call.model.as_deref(), Some("gpt-3.5-turbo-instruct"));
    assert_eq!(call.header("authorization"), Some("Bearer provider-key"));
    assert_eq!(
        call.json().unwrap()["prompt"],
        "Say hello to the test suite"
    );
}

#[tokio::test]
async fn every_prompt_form_is_counted() {
    let upstream = MockUpstream::start().await;
    // Each string is counted on its own: 9 bytes -> 3 tokens, 17 -> 5.
    assert_eq!(
        prompt_tokens(&upstream, json!(["Say hello", "to the test suite"])).await,
        8
    );
    assert_eq!(prompt_tokens(&upstream, json!([1, 2, 3, 4])).await, 4);
    assert_eq!(
        prompt_tokens(&upstream, json!([[1, 2, 3], [4, 5]])).await,
        5
    );

    let response = call(
        &upstream,
        "/v1/completions",
        &complete(json!(["a", 1]), false),
        None,
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(
        body_text(response)
            .await
            .contains("Invalid type for 'prompt'")
    );
}

#[tokio::test]
async fn max_tokens_cuts_the_completion() {
    let upstream = MockUpstream::start().await;
    let mut body = complete(json!("Hi"), false);
    body["max_tokens"] = json!(2);
    let response = send(upstream.addr(), post("/v1/completions", &body, None)).await;
    let body = body_json(response.unwrap()).await;
    assert_eq!(body["choices"][0]["text"], "Hello from ");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn the_stream_has_text_chunks_a_finish_chunk_usage_and_done() {
    let upstream = MockUpstream::builder().reply("one two").start().await;
    let response = call(
        &upstream,
        "/v1/completions",
        &complete(json!("Hi"), true),
        None,
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = body_text(response).await;
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let data = json_events(body.strip_suffix("data: [DONE]\n\n").unwrap());
    assert_eq!(data.len(), 4, "{body}");
    for chunk in &data {
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(chunk["id"], data[0]["id"]);
    }
    assert_eq!(data[0]["choices"][0]["text"], "one ");
    assert_eq!(data[1]["choices"][0]["text"], "two");
    assert_eq!(data[1]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(data[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[2]["usage"], Value::Null);
    assert_eq!(data[3]["choices"], json!([]));
    assert_eq!(
        data[3]["usage"],
        json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    );

    let mut without_usage = complete(json!("Hi"), true);
    without_usage["stream_options"] = Value::Null;
    let body = body_text(call(&upstream, "/v1/completions", &without_usage, None).await).await;
    assert!(!body.contains("usage"), "{body}");
    assert_eq!(events(&body).len(), 4, "two words, finish, done: {body}");
}

#[tokio::test]
async fn reasoning_and_cached_tokens_add_the_usage_details() {
    let upstream = MockUpstream::start().await;
    let body = body_json(
        call(
            &upstream,
            "/v1/completions",
            &complete(json!("Say hello to the test suite"), false),
            Some("reasoning-tokens=3; cached-tokens=2"),
        )
        .await,
    )
    .await;
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 2},
            "completion_tokens": 9,
            "completion_tokens_details": {"reasoning_tokens": 3},
            "total_tokens": 16,
        })
    );
}

#[tokio::test]
async fn an_error_mid_stream_is_an_error_event_without_done() {
    let upstream = MockUpstream::start().await;
    let body = body_text(
        call(
            &upstream,
            "/v1/completions",
            &complete(json!("Hi"), true),
            Some("error-after=1"),
        )
        .await,
    )
    .await;
    assert!(!body.contains("[DONE]"), "{body}");
    let data = json_events(&body);
    assert_eq!(data.len(), 2, "{body}");
    assert_eq!(data[0]["choices"][0]["text"], "Hello ");
    assert_eq!(data[1]["error"]["type"], "server_error");
    assert_eq!(
        upstream.calls()[0]
            .wait_outcome(Duration::from_secs(1))
            .await,
        Outcome::Faulted
    );
}

#[tokio::test]
async fn stream_and_status_faults_apply() {
    let upstream = MockUpstream::start().await;
    let response = call(
        &upstream,
        "/v1/completions",
        &complete(json!("Hi"), true),
        Some("abort-after=2"),
    )
    .await;
    let (received, kind) = read_until_error(response.into_body()).await;
    assert_eq!(kind, Some(std::io::ErrorKind::UnexpectedEof));
    assert_eq!(received.matches("data: ").count(), 2, "{received}");

    let response = call(
        &upstream,
        "/v1/completions",
        &complete(json!("Hi"), false),
        Some("status=503"),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(body_json(response).await["error"]["type"], "server_error");
}
