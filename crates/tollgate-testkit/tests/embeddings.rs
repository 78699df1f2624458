//! `POST /v1/embeddings`: one vector per input, usage, dimensions, and faults.

mod common;

use std::time::{Duration, Instant};

use common::{call, post};
use serde_json::{Value, json};
use tollgate_testkit::{
    EMBEDDING_DIMENSIONS, MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS, MockUpstream, Outcome,
    body_json, body_text, send,
};

async fn embed(upstream: &MockUpstream, body: Value) -> Value {
    let response = send(upstream.addr(), post("/v1/embeddings", &body, None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    body_json(response).await
}

fn vectors(body: &Value) -> Vec<Vec<f64>> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            item["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn one_unit_vector_per_input_with_usage_from_the_input() {
    let upstream = MockUpstream::start().await;
    let body = embed(
        &upstream,
        json!({"model": "text-embedding-3-small", "input": "Say hello to the test suite"}),
    )
    .await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["data"][0]["object"], "embedding");
    assert_eq!(body["data"][0]["index"], 0);
    // 27 bytes -> 7 tokens.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 7, "total_tokens": 7})
    );
    let vectors = vectors(&body);
    assert_eq!(vectors.len(), 1);
    assert_eq!(vectors[0].len(), EMBEDDING_DIMENSIONS);
    let norm: f64 = vectors[0].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");

    let call = upstream.calls().pop().unwrap();
    assert_eq!(call.path, "/v1/embeddings");
    assert_eq!(call.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(call.header("authorization"), Some("Bearer provider-key"));
    assert_eq!(call.json().unwrap()["input"], "Say hello to the test suite");
    assert_eq!(call.outcome(), Outcome::Completed);
}

#[tokio::test]
async fn every_input_form_is_embedded_and_counted() {
    let upstream = MockUpstream::start().await;
    let body = embed(
        &upstream,
        json!({"model": "e", "input": ["Say hello", "to the test suite", "Say hello"]}),
    )
    .await;
    let indexes: Vec<&Value> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["index"])
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    // 3 + 5 + 3 tokens, each string counted on its own.
    assert_eq!(body["usage"]["prompt_tokens"], 11);
    let vectors = vectors(&body);
    assert_eq!(vectors[0], vectors[2], "the same text embeds the same");
    assert_ne!(vectors[0], vectors[1]);

    let body = embed(&upstream, json!({"model": "e", "input": [1, 2, 3]})).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    let body = embed(&upstream, json!({"model": "e", "input": [[1, 2], [3]]})).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
}

#[tokio::test]
async fn dimensions_are_honoured_up_to_the_cap() {
    let upstream = MockUpstream::start().await;
    for (asked, served) in [(16, 16), (100_000, MAX_EMBEDDING_DIMENSIONS), (0, 1)] {
        let body = embed(
            &upstream,
            json!({"model": "e", "input": "Hi", "dimensions": asked}),
        )
        .await;
        assert_eq!(vectors(&body)[0].len(), served, "dimensions {asked}");
    }
}

#[tokio::test]
async fn bad_inputs_are_400s() {
    let upstream = MockUpstream::start().await;
    let too_many = vec!["a"; MAX_EMBEDDING_INPUTS + 1];
    for (body, message) in [
        (json!({"model": "e"}), "Missing required parameter: 'input'"),
        (
            json!({"model": "e", "input": {"text": "Hi"}}),
            "Invalid type for 'input'",
        ),
        (
            json!({"model": "e", "input": [[1], "Hi"]}),
            "Invalid type for 'input'",
        ),
        (json!({"model": "e", "input": too_many}), "at most 2048"),
    ] {
        let response = send(upstream.addr(), post("/v1/embeddings", &body, None))
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let text = body_text(response).await;
        assert!(text.contains(message), "{text}");
    }
    let mut at_the_cap = json!({"model": "e", "input": vec!["a"; MAX_EMBEDDING_INPUTS]});
    at_the_cap["dimensions"] = json!(1);
    let body = embed(&upstream, at_the_cap).await;
    assert_eq!(body["data"].as_array().unwrap().len(), MAX_EMBEDDING_INPUTS);
}

#[tokio::test]
async fn status_reset_and_slow_first_byte_faults_apply() {
    let upstream = MockUpstream::start().await;
    let body = json!({"model": "e", "input": "Hi"});
    let response = call(&upstream, "/v1/embeddings", &body, Some("status=500")).await;
    assert_eq!(response.status(), 500);
    assert_eq!(body_json(response).await["error"]["type"], "server_error");

    let request = post("/v1/embeddings", &body, Some("reset"));
    let error = send(upstream.addr(), request).await.unwrap_err();
    let kind = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    assert_eq!(kind, Some(std::io::ErrorKind::ConnectionReset), "{error:?}");

    let started = Instant::now();
    let response = call(
        &upstream,
        "/v1/embeddings",
        &body,
        Some("first-byte-delay-ms=120"),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(response.status(), 200);
}
