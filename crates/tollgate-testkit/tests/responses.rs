//! `POST /v1/responses`: the JSON response object, the named-event stream, and faults.

mod common;

use std::time::Duration;

use common::{call, events, json_events, post, read_until_error};
use serde_json::{Value, json};
use tollgate_testkit::{DEFAULT_REPLY, MockUpstream, Outcome, body_json, body_text, send};

fn ask(input: Value, stream: bool) -> Value {
    json!({"model": "gpt-5.4", "instructions": "Be brief.", "input": input, "stream": stream})
}

#[tokio::test]
async fn a_response_object_holds_the_reply_and_usage_from_the_input() {
    let upstream = MockUpstream::start().await;
    let response = call(
        &upstream,
        "/v1/responses",
        &ask(json!("Say hello to the test suite"), false),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = body_json(response).await;
    assert!(body["id"].as_str().unwrap().starts_with("resp_"), "{body}");
    assert_eq!(body["object"], "response");
    assert!(body["created_at"].is_u64());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-5.4");
    let output = body["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    assert!(output[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["status"], "completed");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(
        output[0]["content"],
        json!([{"type": "output_text", "text": DEFAULT_REPLY, "annotations": []}])
    );
    // 9 + 27 bytes of text -> 9 tokens, + 3 for each of the two messages; 6 reply words.
    assert_eq!(
        body["usage"],
        json!({
            "input_tokens": 15,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 6,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 21,
        })
    );

    let call = upstream.calls().pop().unwrap();
    assert_eq!(call.path, "/v1/responses");
    assert_eq!(call.model.as_deref(), Some("gpt-5.4"));
    assert_eq!(call.header("authorization"), Some("Bearer provider-key"));
    assert_eq!(call.json().unwrap()["instructions"], "Be brief.");
    assert_eq!(
        call.wait_outcome(Duration::from_secs(1)).await,
        Outcome::Completed
    );
}

#[tokio::test]
async fn input_items_count_as_messages_of_their_text() {
    let upstream = MockUpstream::start().await;
    let input = json!([
        {"role": "user", "content": "Say hello"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "to the test suite"},
            {"type": "input_image", "image_url": "https://example.com/a-long-url-that-does-not-count.png"},
        ]},
    ]);
    let body = json!({"model": "gpt-5.4", "input": input});
    let response = send(upstream.addr(), post("/v1/responses", &body, None)).await;
    let body = body_json(response.unwrap()).await;
    // 9 + 17 bytes of text -> 7 tokens, + 3 for each of the two items.
    assert_eq!(body["usage"]["input_tokens"], 13);
}

#[tokio::test]
async fn the_stream_is_openais_named_events_with_the_usage_at_the_end() {
    let upstream = MockUpstream::builder().reply("one two").start().await;
    let response = call(
        &upstream,
        "/v1/responses",
        &ask(json!("Say hello to the test suite"), true),
        Some("cached-tokens=4; reasoning-tokens=5"),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = body_text(response).await;
    let names: Vec<&str> = events(&body)
        .iter()
        .map(|(name, _)| name.unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert!(!body.contains("[DONE]"));
    let data = json_events(&body);
    for (sequence_number, (name, event)) in names.iter().zip(&data).enumerate() {
        assert_eq!(event["type"], *name);
        assert_eq!(event["sequence_number"], sequence_number);
    }
    assert_eq!(data[0]["response"]["status"], "in_progress");
    assert_eq!(data[0]["response"]["output"], json!([]));
    let message_id = data[2]["item"]["id"].as_str().unwrap();
    assert_eq!(data[2]["item"]["status"], "in_progress");
    assert_eq!(data[3]["item_id"], message_id);
    assert_eq!(data[3]["part"]["text"], "");
    assert_eq!(data[4]["delta"], "one ");
    assert_eq!(data[5]["delta"], "two");
    assert_eq!(data[5]["item_id"], message_id);
    assert_eq!(data[6]["text"], "one two");
    assert_eq!(data[7]["part"]["text"], "one two");
    assert_eq!(data[8]["item"]["status"], "completed");
    assert_eq!(data[8]["item"]["content"][0]["text"], "one two");

    let completed = &data[9]["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["id"], data[0]["response"]["id"]);
    assert_eq!(completed["output"][0], data[8]["item"]);
    // Cached tokens are part of the 15 input tokens, reasoning tokens of the output tokens.
    assert_eq!(
        completed["usage"],
        json!({
            "input_tokens": 15,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 5},
            "total_tokens": 22,
        })
    );
}

#[tokio::test]
async fn max_output_tokens_leaves_the_response_incomplete() {
    let upstream = MockUpstream::start().await;
    let mut body = ask(json!("Hi"), false);
    body["max_output_tokens"] = json!(2);
    let response = send(upstream.addr(), post("/v1/responses", &body, None)).await;
    let json = body_json(response.unwrap()).await;
    assert_eq!(json["status"], "incomplete");
    assert_eq!(
        json["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(json["output"][0]["status"], "incomplete");
    assert_eq!(json["output"][0]["content"][0]["text"], "Hello from ");
    assert_eq!(json["usage"]["output_tokens"], 2);

    body["stream"] = json!(true);
    let response = send(upstream.addr(), post("/v1/responses", &body, None)).await;
    let text = body_text(response.unwrap()).await;
    let (last, data) = *events(&text).last().unwrap();
    assert_eq!(last, Some("response.incomplete"));
    assert!(data.contains(r#""status":"incomplete""#), "{data}");
}

#[tokio::test]
async fn cached_tokens_are_at_most_the_input_tokens() {
    let upstream = MockUpstream::start().await;
    let body = body_json(
        call(
            &upstream,
            "/v1/responses",
            &json!({"model": "gpt-5.4", "input": "Hi"}),
            Some("cached-tokens=50"),
        )
        .await,
    )
    .await;
    assert_eq!(body["usage"]["input_tokens"], 4);
    assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 4);
}

#[tokio::test]
async fn an_error_mid_stream_is_an_error_event_and_a_clean_end() {
    let upstream = MockUpstream::start().await;
    let response = call(
        &upstream,
        "/v1/responses",
        &ask(json!("Hi"), true),
        Some("error-after=2"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = body_text(response).await;
    let events = events(&body);
    let deltas = events
        .iter()
        .filter(|(name, _)| *name == Some("response.output_text.delta"))
        .count();
    assert_eq!(deltas, 2, "{body}");
    let (name, data) = events.last().unwrap();
    assert_eq!(*name, Some("error"));
    let error: Value = serde_json::from_str(data).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "server_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("chunks sent: 2")
    );
    assert_eq!(error["param"], Value::Null);
    // Four opening events and two deltas came before it.
    assert_eq!(error["sequence_number"], 6);
    assert_eq!(
        upstream.calls()[0]
            .wait_outcome(Duration::from_secs(1))
            .await,
        Outcome::Faulted
    );
}

#[tokio::test]
async fn an_abort_mid_stream_cuts_the_connection_after_the_given_deltas() {
    let upstream = MockUpstream::start().await;
    let response = call(
        &upstream,
        "/v1/responses",
        &ask(json!("Hi"), true),
        Some("abort-after=1"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (received, kind) = read_until_error(response.into_body()).await;
    assert_eq!(kind, Some(std::io::ErrorKind::UnexpectedEof));
    assert_eq!(received.matches("event: ").count(), 5, "{received}");
    assert_eq!(
        received
            .matches("event: response.output_text.delta")
            .count(),
        1
    );
    assert_eq!(upstream.calls()[0].outcome(), Outcome::Faulted);
}

#[tokio::test]
async fn status_reset_and_slow_first_byte_faults_apply() {
    let upstream = MockUpstream::start().await;
    let response = call(
        &upstream,
        "/v1/responses",
        &ask(json!("Hi"), true),
        Some("status=429; retry-after=3"),
    )
    .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(
        body_json(response).await["error"]["type"],
        "rate_limit_exceeded"
    );

    let request = post("/v1/responses", &ask(json!("Hi"), false), Some("reset"));
    let error = send(upstream.addr(), request).await.unwrap_err();
    let kind = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    assert_eq!(kind, Some(std::io::ErrorKind::ConnectionReset), "{error:?}");

    let started = std::time::Instant::now();
    let response = call(
        &upstream,
        "/v1/responses",
        &ask(json!("Hi"), false),
        Some("first-byte-delay-ms=120"),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn chunks_and_their_delay_shape_the_stream() {
    let upstream = MockUpstream::builder()
        .chunk_delay(Duration::from_millis(30))
        .start()
        .await;
    let body = body_text(
        call(
            &upstream,
            "/v1/responses",
            &ask(json!("Hi"), true),
            Some("chunks=3"),
        )
        .await,
    )
    .await;
    let deltas = body.matches("event: response.output_text.delta").count();
    assert_eq!(deltas, 3);
    let sent = upstream.calls()[0].frames_sent_at();
    // 4 opening events, then the deltas, each after the pause.
    for pair in sent[3..7].windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(30));
    }
}

#[tokio::test]
async fn an_input_of_another_type_is_a_400() {
    let upstream = MockUpstream::start().await;
    let response = call(
        &upstream,
        "/v1/responses",
        &json!({"model": "gpt-5.4", "input": 42}),
        None,
    )
    .await;
    assert_eq!(response.status(), 400);
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid type for 'input'"),
        "{body}"
    );
}

#[tokio::test]
async fn input_tokens_match_the_chat_count_of_the_same_messages() {
    let upstream = MockUpstream::start().await;
    // Escapes and non-ASCII count as written in the JSON, as chat counts them.
    let text = "Quote \"this\",\nthen é and \u{1F600}.";
    let chat = json!({
        "model": "gpt-5.4",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text},
        ],
    });
    let response = send(upstream.addr(), post("/v1/chat/completions", &chat, None)).await;
    let chat_tokens = body_json(response.unwrap()).await["usage"]["prompt_tokens"].clone();

    let body = json!({"model": "gpt-5.4", "instructions": "Be brief.", "input": text});
    let response = send(upstream.addr(), post("/v1/responses", &body, None)).await;
    let response_tokens = body_json(response.unwrap()).await["usage"]["input_tokens"].clone();
    assert_eq!(response_tokens, chat_tokens);

    let body = json!({"model": "gpt-5.4", "instructions": null, "input": null});
    let response = send(upstream.addr(), post("/v1/responses", &body, None)).await;
    assert_eq!(
        body_json(response.unwrap()).await["usage"]["input_tokens"],
        0
    );
}
