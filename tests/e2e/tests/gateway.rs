//! The demo gateway end to end over TCP: the full stack of `examples/gateway`, the testkit
//! mock as its upstream, async-openai and a raw hyper client as clients.

// The example's own configuration and stack; the tests use most, not all, of what they expose.
#[allow(dead_code)]
#[path = "../../../examples/gateway/backends.rs"]
mod backends;
#[allow(dead_code)]
#[path = "../../../examples/gateway/config.rs"]
mod config;
#[allow(dead_code)]
#[path = "../../../examples/gateway/stack.rs"]
mod stack;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tollgate::balance::Ledger;
use tollgate::core::Body;
use tollgate_testkit::{Behavior, Fault, MockUpstream, Outcome, TestServer, body_text};

const DEMO: &str = "sk-llmaai-demo-0123456789abcdef0123456789abcdef";
const BROKE: &str = "sk-llmaai-broke-0123456789abcdef0123456789abcd";
const MINI: &str = "sk-llmaai-mini-0123456789abcdef0123456789abcde";

struct Running {
    server: TestServer,
    upstream: MockUpstream,
    handles: stack::Handles,
}

/// The default configuration, with one retry (to keep the suite fast) and a 1 s first-byte
/// timeout.
async fn start(upstream: MockUpstream) -> Running {
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.upstream.max_retries = 1;
    config.upstream.first_byte_timeout_secs = 1;
    start_with(&config, upstream).await
}

/// `config`'s gateway over `upstream`, with the provider key `sk-provider`.
async fn start_with(config: &config::Config, upstream: MockUpstream) -> Running {
    let (gateway, handles) = stack::build(config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    Running {
        server: TestServer::start(gateway).await,
        upstream,
        handles,
    }
}

fn openai(running: &Running, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", running.server.url()))
            .with_api_key(key),
    )
}

fn chat(model: &str) -> async_openai::types::chat::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .max_tokens(100u32)
        .messages([ChatCompletionRequestUserMessage::from("Say hello").into()])
        .build()
        .unwrap()
}

async fn raw(
    addr: SocketAddr,
    key: Option<&str>,
    body: Value,
    mock: Option<&str>,
) -> Response<Incoming> {
    let mut request = Request::post("/v1/chat/completions")
        .header("host", "gateway")
        .header("content-type", "application/json")
        .header("x-request-id", "req_e2e");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if let Some(mock) = mock {
        request = request.header("x-mock", mock);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    tollgate_testkit::send(addr, request).await.unwrap()
}

async fn envelope(response: Response<Incoming>) -> (u16, HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

/// `method path` with the demo key and a JSON body, sent over TCP.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gateway")
        .header("authorization", format!("Bearer {DEMO}"))
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    tollgate_testkit::send(addr, request).await.unwrap()
}

fn body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 100})
}

#[tokio::test]
async fn a_completion_succeeds_and_is_billed() {
    let running = start(MockUpstream::start().await).await;
    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    let response = openai(&running, DEMO)
        .chat()
        .create(chat("gpt-5"))
        .await
        .unwrap();
    assert_eq!(response.model, "gpt-5.4", "the alias was resolved");
    let usage = response.usage.unwrap();
    let call = running.upstream.calls().pop().unwrap();
    assert_eq!(
        call.header("authorization"),
        Some("Bearer sk-provider"),
        "the provider key, never the client's"
    );
    assert_eq!(call.json().unwrap()["model"], "gpt-5.4");
    let price = running
        .handles
        .catalog
        .current()
        .get("gpt-5.4")
        .unwrap()
        .info
        .prices;
    let cost = price.cost(
        u64::from(usage.prompt_tokens),
        u64::from(usage.completion_tokens),
    );
    assert_eq!(
        running.handles.ledger.balance("acct_demo").await.unwrap(),
        before - cost
    );
}

#[tokio::test]
async fn a_stream_carries_rate_limit_headers_and_settles_its_usage() {
    let running = start(MockUpstream::builder().chunks(8).start().await).await;
    // async-openai reads the stream: every word arrives.
    let mut stream = openai(&running, DEMO)
        .chat()
        .create_stream(chat("gpt-5.4"))
        .await
        .unwrap();
    let mut words = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if chunk
            .choices
            .first()
            .and_then(|choice| choice.delta.content.as_deref())
            .is_some_and(|text| !text.is_empty())
        {
            words += 1;
        }
    }
    assert_eq!(words, 8);
    // The head of a stream has the rate-limit headers; usage was injected for accounting and
    // stripped for this client, who did not ask for it.
    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    let mut streaming = body("gpt-5.4");
    streaming["stream"] = json!(true);
    let response = raw(running.server.addr(), Some(DEMO), streaming, None).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-ratelimit-limit-requests"], "60");
    assert!(response.headers().contains_key("x-ratelimit-remaining"));
    let streamed = body_text(response).await;
    assert!(!streamed.contains("\"usage\":{"), "{streamed}");
    assert!(streamed.ends_with("data: [DONE]\n\n"));
    let call = running.upstream.calls().pop().unwrap();
    assert_eq!(
        call.json().unwrap()["stream_options"]["include_usage"],
        true
    );
    let price = running
        .handles
        .catalog
        .current()
        .get("gpt-5.4")
        .unwrap()
        .info
        .prices;
    let prompt = tollgate_testkit::prompt_tokens(
        &tollgate::core::ChatRequest::parse(call.body.clone()).unwrap(),
    );
    for _ in 0..100 {
        if running.handles.ledger.balance("acct_demo").await.unwrap() != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        running.handles.ledger.balance("acct_demo").await.unwrap(),
        before - price.cost(prompt, 8)
    );
}

#[tokio::test]
async fn async_openai_sees_the_gateways_client_errors() {
    let running = start(MockUpstream::start().await).await;
    let error = openai(&running, "sk-llmaai-nope")
        .chat()
        .create(chat("gpt-5.4"))
        .await
        .unwrap_err();
    let OpenAIError::ApiError(error) = error else {
        panic!("{error}")
    };
    assert_eq!(error.status_code.as_u16(), 401);
    assert_eq!(error.api_error.r#type.as_deref(), Some("auth_error"));
    assert_eq!(error.api_error.code.as_deref(), Some("invalid_api_key"));
    let error = openai(&running, DEMO)
        .chat()
        .create(chat("gpt-4o"))
        .await
        .unwrap_err();
    let OpenAIError::ApiError(error) = error else {
        panic!("{error}")
    };
    assert_eq!(error.status_code.as_u16(), 410);
    assert_eq!(
        error.api_error.message,
        "Model \"gpt-4o\" was retired on 2026-06-30. Use \"gpt-5.4\" instead."
    );
}

#[tokio::test]
async fn every_client_error_has_its_envelope_and_headers() {
    let running = start(MockUpstream::start().await).await;
    let addr = running.server.addr();
    /// A case's name, key, body, and the status, type and param it must get.
    type Case = (
        &'static str,
        Option<&'static str>,
        Value,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "temperature",
            Some(DEMO),
            json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            400,
            "invalid_request_error",
            Some("temperature"),
        ),
        (
            "missing key",
            None,
            body("gpt-5.4"),
            401,
            "auth_error",
            None,
        ),
        (
            "no credit",
            Some(BROKE),
            body("gpt-5.4"),
            402,
            "insufficient_balance",
            None,
        ),
        (
            "not allowed",
            Some(MINI),
            body("gpt-5.4"),
            403,
            "forbidden",
            Some("model"),
        ),
        (
            "unknown",
            Some(DEMO),
            body("GPT-5.4"),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            "retired",
            Some(DEMO),
            body("gpt-4o"),
            410,
            "model_retired",
            Some("model"),
        ),
        (
            "above the model's max output",
            Some(DEMO),
            json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "x"}], "max_tokens": 500000}),
            400,
            "invalid_request_error",
            Some("max_tokens"),
        ),
        (
            "too large",
            Some(DEMO),
            json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "x".repeat(4 << 20)}]}),
            413,
            "request_too_large",
            None,
        ),
    ];
    for (name, key, request, status, kind, param) in cases {
        let (got, headers, json) = envelope(raw(addr, key, request, None).await).await;
        assert_eq!(got, status, "{name}: {json}");
        assert_eq!(json["error"]["type"], kind, "{name}");
        assert_eq!(
            json["error"]["param"],
            param.map_or(Value::Null, Value::from),
            "{name}"
        );
        assert_eq!(json["request_id"], "req_e2e", "{name}");
        assert_eq!(headers["x-request-id"], "req_e2e", "{name}");
        assert_eq!(headers["content-type"], "application/json", "{name}");
        assert_eq!(headers["x-should-retry"], "false", "{name}");
        if status == 401 {
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }
    // 429: the mini key allows 5 requests a minute.
    for _ in 0..5 {
        let response = raw(addr, Some(MINI), body("gpt-5.4-mini"), None).await;
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }
    let (status, headers, json) =
        envelope(raw(addr, Some(MINI), body("gpt-5.4-mini"), None).await).await;
    assert_eq!(status, 429);
    assert_eq!(json["error"]["type"], "rate_limit_exceeded");
    assert_eq!(headers["retry-after"], "12");
    assert_eq!(headers["x-should-retry"], "true");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
}

#[tokio::test]
async fn upstream_failures_are_502_503_504_after_retries() {
    let upstream = MockUpstream::builder()
        .model_behavior("gpt-5.4-mini", Behavior::status(500))
        .start()
        .await;
    let running = start(upstream).await;
    let addr = running.server.addr();

    // 502: the upstream answers 500, once more after a retry.
    let (status, headers, json) =
        envelope(raw(addr, Some(DEMO), body("gpt-5.4-mini"), None).await).await;
    assert_eq!(status, 502);
    assert_eq!(json["error"]["type"], "provider_error");
    assert_eq!(json["error"]["details"]["upstream_status"], 500);
    assert_eq!(headers["x-should-retry"], "true");
    assert_eq!(
        running.upstream.calls_for("gpt-5.4-mini").len(),
        2,
        "one retry"
    );

    // 504: the first byte comes after the 1 s timeout; timeouts are not retried.
    let (status, _, json) = envelope(
        raw(
            addr,
            Some(DEMO),
            body("gpt-4.1"),
            Some("first-byte-delay-ms=3000"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(json["error"]["type"], "timeout");
    assert_eq!(running.upstream.calls_for("gpt-4.1").len(), 1);

    // 429 from the upstream with a retry-after beyond the cap: passed on, not waited for.
    let (status, headers, json) = envelope(
        raw(
            addr,
            Some(DEMO),
            body("gpt-4.1"),
            Some("status=429; retry-after=30"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, json["error"]["type"].as_str()),
        (429, Some("rate_limit_exceeded"))
    );
    assert_eq!(headers["retry-after"], "30");

    // 503: nothing listens where the upstream should be.
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    let (gateway, _) = stack::build(&config, &format!("http://{unreachable}"), None)
        .await
        .unwrap();
    let server = TestServer::start(gateway).await;
    let (status, headers, json) =
        envelope(raw(server.addr(), Some(DEMO), body("gpt-4.1"), None).await).await;
    assert_eq!(status, 503);
    assert_eq!(json["error"]["type"], "provider_unavailable");
    assert_eq!(headers["x-should-retry"], "true");
}

#[tokio::test]
async fn a_panic_is_a_500_envelope() {
    let config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    let panics = tower::service_fn(|_request: Request<Body>| async {
        if true {
            panic!("a bug in a handler");
        }
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    let (gateway, _) = stack::build_over(&config, panics).await.unwrap();
    let server = TestServer::start(gateway).await;
    let (status, headers, json) =
        envelope(raw(server.addr(), Some(DEMO), body("gpt-5.4"), None).await).await;
    assert_eq!(status, 500);
    assert_eq!(json["error"]["type"], "internal_error");
    assert_eq!(json["request_id"], "req_e2e");
    assert_eq!(headers["x-should-retry"], "true");
    assert!(!json.to_string().contains("a bug"));
}

#[tokio::test]
async fn a_retry_recovers_and_a_fallback_serves_at_its_own_price() {
    let upstream = MockUpstream::builder()
        .model_behavior_times("gpt-4.1", Behavior::status(503), 1)
        .model_behavior("gpt-5.4", Behavior::status(502))
        .start()
        .await;
    let running = start(upstream).await;
    let addr = running.server.addr();

    let response = raw(addr, Some(DEMO), body("gpt-4.1"), None).await;
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    assert_eq!(
        running.upstream.calls_for("gpt-4.1").len(),
        2,
        "failed once, then retried"
    );

    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    let response = raw(addr, Some(DEMO), body("gpt-5.4"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-model"], "gpt-5.4-mini");
    let json: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        running.upstream.calls_for("gpt-5.4").len(),
        2,
        "the model and its retry"
    );
    assert_eq!(
        running.upstream.calls_for("gpt-5.4-mini").len(),
        1,
        "then its fallback"
    );
    let mini = running
        .handles
        .catalog
        .current()
        .get("gpt-5.4-mini")
        .unwrap()
        .info
        .prices;
    let cost = mini.cost(
        json["usage"]["prompt_tokens"].as_u64().unwrap(),
        json["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(
        running.handles.ledger.balance("acct_demo").await.unwrap(),
        before - cost,
        "billed at the fallback's price"
    );
}

#[tokio::test]
async fn a_client_hanging_up_mid_stream_cancels_the_upstream() {
    let running = start(
        MockUpstream::builder()
            .chunks(100)
            .chunk_delay(Duration::from_millis(20))
            .start()
            .await,
    )
    .await;
    let mut streaming = body("gpt-5.4");
    streaming["stream"] = json!(true);
    let response = raw(running.server.addr(), Some(DEMO), streaming, None).await;
    let mut stream = response.into_body();
    stream.frame().await.unwrap().unwrap();
    stream.frame().await.unwrap().unwrap();
    drop(stream);
    let call = running.upstream.calls().pop().unwrap();
    assert_eq!(
        call.wait_outcome(Duration::from_secs(3)).await,
        Outcome::ClientHungUp
    );
}

#[tokio::test]
async fn a_request_can_name_its_own_fallbacks() {
    let upstream = MockUpstream::builder()
        .model_behavior("gpt-4.1", Behavior::status(503))
        .start()
        .await;
    let running = start(upstream).await;
    let mut request = body("gpt-4.1");
    request["fallbacks"] = json!(["latest"]);
    let response = raw(running.server.addr(), Some(DEMO), request, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-tollgate-model"],
        "gpt-5.4",
        "the alias resolved to its model"
    );
    response.into_body().collect().await.unwrap();
    let calls = running.upstream.calls();
    assert_eq!(running.upstream.calls_for("gpt-4.1").len(), 2);
    let served = calls.last().unwrap().json().unwrap();
    assert_eq!(served["model"], "gpt-5.4");
    assert!(
        served.get("fallbacks").is_none(),
        "the extension never goes upstream"
    );

    let mut request = body("gpt-4.1");
    request["fallbacks"] = json!(["gpt-4o"]);
    let (status, _, json) =
        envelope(raw(running.server.addr(), Some(DEMO), request, None).await).await;
    assert_eq!(
        (status, json["error"]["param"].as_str()),
        (410, Some("fallbacks[0]"))
    );
}

/// Default deny: paths, methods and spellings the stack does not meter never reach the
/// provider (which would answer them under the gateway's key, unbilled).
#[tokio::test]
async fn unknown_routes_and_methods_never_reach_the_upstream() {
    let running = start(MockUpstream::start().await).await;
    let probes = [
        ("POST", "/v1/batches", 404),
        ("DELETE", "/v1/files/file-abc", 404),
        ("GET", "/v1/organization/costs", 404),
        ("POST", "/v1/chat/completions/", 404),
        ("POST", "/v1//chat/completions", 404),
        ("POST", "/v1/chat%2Fcompletions", 404),
        ("PUT", "/v1/chat/completions", 405),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/models/gpt-5.4", 405),
    ];
    for (method, path, status) in probes {
        let body = body("gpt-5.4").to_string();
        let response = call(running.server.addr(), method, path, body).await;
        let (got, headers, json) = envelope(response).await;
        assert_eq!(got, status, "{method} {path}");
        let expected = if status == 404 {
            "unknown_route"
        } else {
            "method_not_allowed"
        };
        assert_eq!(json["error"]["type"], expected, "{method} {path}");
        assert_eq!(
            headers.contains_key("allow"),
            status == 405,
            "{method} {path}"
        );
    }
    assert!(
        running.upstream.calls().is_empty(),
        "nothing reached the provider: {:?}",
        running
            .upstream
            .calls()
            .iter()
            .map(|call| &call.path)
            .collect::<Vec<_>>()
    );

    // A listed passthrough is let through, authenticated, for its method only.
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.routes.passthrough = vec!["GET /v1/organization/usage".into()];
    let upstream = MockUpstream::start().await;
    let Running {
        server,
        upstream,
        handles: _,
    } = start_with(&config, upstream).await;
    let request = |key: &str| {
        Request::get("/v1/organization/usage")
            .header("host", "gateway")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let refused =
        tollgate_testkit::send(server.addr(), request("sk-llmaai-nobody-000000000000000"))
            .await
            .unwrap();
    assert_eq!(refused.status(), 401, "still authenticated");
    // The mock has no such route; what matters is that the request reached it.
    tollgate_testkit::send(server.addr(), request(DEMO))
        .await
        .unwrap();
    let call = upstream
        .calls()
        .pop()
        .expect("the listed route reached the upstream");
    assert_eq!(call.path, "/v1/organization/usage");
}

/// A declared content type used to skip the catalog and the balance gate: a zero-balance key
/// got a free completion by calling its JSON body a form, and a restricted key reached a model
/// it may not use. Every declared type is read as JSON now.
#[tokio::test]
async fn no_content_type_skips_the_checks_or_the_bill() {
    let running = start(MockUpstream::start().await).await;
    let content_types = [
        Some("multipart/form-data; boundary=x"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("application/octet-stream"),
        None,
    ];
    let send = |key: &'static str, model: &'static str, content_type: Option<&'static str>| {
        let mut request = Request::post("/v1/chat/completions")
            .header("host", "gateway")
            .header("authorization", format!("Bearer {key}"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request
            .body(Full::new(Bytes::from(body(model).to_string())))
            .unwrap();
        tollgate_testkit::send(running.server.addr(), request)
    };
    for content_type in content_types {
        let (status, _, json) = envelope(send(BROKE, "gpt-5.4", content_type).await.unwrap()).await;
        assert_eq!(
            (status, json["error"]["type"].as_str()),
            (402, Some("insufficient_balance")),
            "{content_type:?}"
        );
        let (status, _, _) = envelope(send(MINI, "gpt-5.4", content_type).await.unwrap()).await;
        assert_eq!(status, 403, "{content_type:?}");
        let (status, _, _) = envelope(send(DEMO, "gpt-4o", content_type).await.unwrap()).await;
        assert_eq!(status, 410, "{content_type:?}");
    }
    assert!(
        running.upstream.calls().is_empty(),
        "nothing reached the provider"
    );
}

/// A body naming `model` or `max_tokens` twice was checked and billed on one value and
/// forwarded with both; the provider might serve the other.
#[tokio::test]
async fn duplicate_members_are_refused_before_the_upstream() {
    let running = start(MockUpstream::start().await).await;
    for (body, member) in [
        (
            r#"{"model":"gpt-5.4-mini","model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#,
            "model",
        ),
        (
            r#"{"model":"gpt-5.4","max_tokens":1,"max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}"#,
            "max_tokens",
        ),
    ] {
        let response = call(running.server.addr(), "POST", "/v1/chat/completions", body).await;
        let (status, _, json) = envelope(response).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(json["error"]["param"], member);
        assert_eq!(json["error"]["code"], "duplicate_member");
    }
    assert!(
        running.upstream.calls().is_empty(),
        "nothing reached the provider"
    );
}

/// Embeddings (and the Responses API, and legacy completions) carry their prompt in `input` or
/// `prompt`: it is reserved for, not treated as empty.
#[tokio::test]
async fn an_embeddings_prompt_is_reserved_for() {
    let running = start(MockUpstream::start().await).await;
    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    // Two inputs of 5,000 bytes: each fits the model's 8,192-token window by its bytes alone, so
    // neither is tokenized and the bytes are what is reserved for.
    let input = "word ".repeat(1_000);
    let body = json!({"model": "text-embedding-3-small", "input": [input, input]});
    let response = call(
        running.server.addr(),
        "POST",
        "/v1/embeddings",
        body.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let left: u64 = response.headers()["x-tollgate-balance-unreserved"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 10,000 bytes of input at 20,000 micro-units per million tokens: at least 200 reserved.
    assert!(before - left >= 200, "reserved only {}", before - left);
    let json: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let used = json["usage"]["prompt_tokens"].as_u64().unwrap();
    let after = running.handles.ledger.balance("acct_demo").await.unwrap();
    assert_eq!(
        before - after,
        used * 20_000 / 1_000_000,
        "settled at the real usage"
    );
}

/// A Responses API stream settles from its final `response.completed` event.
#[tokio::test]
async fn a_responses_stream_settles_at_its_usage() {
    let running = start(MockUpstream::start().await).await;
    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    let body =
        json!({"model": "gpt-5.4", "input": "Say hello", "stream": true, "max_output_tokens": 100});
    let response = call(
        running.server.addr(),
        "POST",
        "/v1/responses",
        body.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = body_text(response).await;
    assert!(text.contains("event: response.completed"), "{text}");
    let completed = text
        .split("\n\n")
        .find(|event| event.starts_with("event: response.completed"))
        .unwrap();
    let data: Value = serde_json::from_str(completed.split_once("data: ").unwrap().1).unwrap();
    let usage = &data["response"]["usage"];
    let (input, output) = (
        usage["input_tokens"].as_u64().unwrap(),
        usage["output_tokens"].as_u64().unwrap(),
    );
    let prices = running
        .handles
        .catalog
        .current()
        .get("gpt-5.4")
        .unwrap()
        .info
        .prices;
    // Settlement happens as the stream ends; give the body's drop a moment.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = running.handles.ledger.balance("acct_demo").await.unwrap();
    assert_eq!(before - after, prices.cost(input, output));
}

/// Client credentials, cookies and provider-account headers stay at the gateway; the provider
/// key goes to the provider and nowhere else.
#[tokio::test]
async fn client_credentials_stay_at_the_gateway_and_the_provider_key_at_the_provider() {
    // An upstream that names the key it was given in its 401, as OpenAI's does.
    let upstream = MockUpstream::builder()
        .model_behavior("gpt-5.4-mini", Behavior::status(401))
        .start()
        .await;
    let running = start(upstream).await;
    let forbidden = [
        ("api-key", "sk-llmaai-other-azure-style"),
        ("x-api-key", "sk-llmaai-other-anthropic-style"),
        ("cookie", "session=tenant"),
        ("openai-organization", "org-tenant"),
        ("openai-project", "proj_tenant"),
        ("proxy-authorization", "Basic dGVuYW50"),
    ];
    for (path, body) in [
        ("/v1/chat/completions", body("gpt-5.4")),
        (
            "/v1/responses",
            json!({"model": "gpt-5.4", "input": "hi", "max_output_tokens": 50}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "hi"}),
        ),
        ("/v1/chat/completions", body("gpt-5.4-mini")),
    ] {
        let mut request = Request::post(path)
            .header("host", "gateway")
            .header("authorization", format!("Bearer {DEMO}"))
            .header("content-type", "application/json");
        for (name, value) in forbidden {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = tollgate_testkit::send(running.server.addr(), request)
            .await
            .unwrap();
        let headers = format!("{:?}", response.headers());
        let text = body_text(response).await;
        assert!(
            !headers.contains("sk-provider") && !text.contains("sk-provider"),
            "{path}: the client saw the provider key: {headers} {text}"
        );
    }
    let calls = running.upstream.calls();
    assert_eq!(calls.len(), 4, "each request reached the provider once");
    for call in calls {
        assert_eq!(
            call.headers["authorization"], "Bearer sk-provider",
            "{}",
            call.path
        );
        assert_eq!(call.headers.get_all("authorization").iter().count(), 1);
        for (name, _) in forbidden {
            assert!(
                !call.headers.contains_key(name),
                "{} forwarded {name}",
                call.path
            );
        }
        let everything = format!("{:?} {:?}", call.headers, call.body);
        assert!(
            !everything.contains("sk-llmaai-"),
            "{}: a client key reached the provider: {everything}",
            call.path
        );
    }
}

/// The zero-overspend property of the chat path holds for embeddings: with a balance that
/// covers ten reservations, a thousand concurrent requests admit at most ten.
#[tokio::test]
async fn a_thousand_concurrent_embeddings_admit_only_what_the_balance_covers() {
    let upstream = MockUpstream::start().await;
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.limits.requests_per_minute = Some(1_000_000);
    config.limits.model_requests_per_minute = Some(1_000_000);
    config.limits.tokens_per_minute = Some(1_000_000_000_000);
    let (gateway, handles) = stack::build(&config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    let body = json!({"model": "text-embedding-3-small", "input": "word ".repeat(1_000)});
    let request = |key: &str| {
        Request::post("/v1/embeddings")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };

    // One request on the demo account shows what a reservation takes.
    let before = handles.ledger.balance("acct_demo").await.unwrap();
    let probe = tower::ServiceExt::oneshot(gateway.clone(), request(DEMO))
        .await
        .unwrap();
    let left: u64 = probe.headers()["x-tollgate-balance-unreserved"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let reservation = before - left;
    assert!(reservation > 0);
    drop(probe);

    handles
        .ledger
        .top_up("acct_broke", 11 * reservation - 1)
        .await
        .unwrap();
    // Every admitted request stays open until all have been decided.
    let held = upstream.hold().await;
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let call = tower::ServiceExt::oneshot(gateway.clone(), request(BROKE));
            tokio::spawn(async move { call.await.unwrap().status().as_u16() })
        })
        .collect();
    let since = std::time::Instant::now();
    while tasks.iter().filter(|task| task.is_finished()).count() + upstream.calls().len()
        < 1 + 1_000
    {
        assert!(since.elapsed() < Duration::from_secs(60), "undecided");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let admitted = statuses.iter().filter(|&&status| status == 200).count();
    let refused = statuses.iter().filter(|&&status| status == 402).count();
    assert_eq!(admitted, 10, "the balance covers ten reservations");
    assert_eq!(refused, 990, "{statuses:?}");
    let served = upstream.calls().len();
    assert_eq!(
        served,
        1 + 10,
        "only admitted requests reached the provider"
    );
}

/// The operator's fixed provider headers go upstream in place of anything a client sent.
#[tokio::test]
async fn the_operators_provider_headers_replace_the_clients() {
    let upstream = MockUpstream::start().await;
    let mut config = config::Config::parse(&config::DEFAULT_CONFIG.replace(
        "forward_headers = [\"x-mock\"]",
        "forward_headers = [\"x-mock\"]\nheaders = { \"openai-organization\" = \"org-gateway\" }",
    ))
    .unwrap();
    config.upstream.max_retries = 0;
    let Running {
        server,
        upstream,
        handles: _,
    } = start_with(&config, upstream).await;
    let request = Request::post("/v1/chat/completions")
        .header("host", "gateway")
        .header("authorization", format!("Bearer {DEMO}"))
        .header("openai-organization", "org-tenant")
        .body(Full::new(Bytes::from(body("gpt-5.4").to_string())))
        .unwrap();
    let response = tollgate_testkit::send(server.addr(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let call = upstream.calls().pop().unwrap();
    let sent: Vec<_> = call.headers.get_all("openai-organization").iter().collect();
    assert_eq!(sent, ["org-gateway"]);

    let refused = config::Config::parse(&config::DEFAULT_CONFIG.replace(
        "forward_headers = [\"x-mock\"]",
        "headers = { \"authorization\" = \"Bearer other\" }",
    ))
    .unwrap();
    assert!(
        stack::build(&refused, &upstream.url(), Some("sk-provider"))
            .await
            .is_err(),
        "the provider key is the gateway's to set, not a fixed header's"
    );
}

/// Prompt tokens the provider read from its cache are billed at the catalog's `cached_input`
/// price, reasoning tokens once as completion tokens.
#[tokio::test]
async fn cached_prompt_tokens_are_billed_at_the_cached_price() {
    let reported = Behavior {
        cached_tokens: Some(4),
        reasoning_tokens: Some(20),
        ..Behavior::default()
    };
    let upstream = MockUpstream::builder()
        .model_behavior("gpt-5.4", reported)
        .start()
        .await;
    let running = start(upstream).await;
    let prices = running
        .handles
        .catalog
        .current()
        .get("gpt-5.4")
        .unwrap()
        .info
        .prices;
    assert_eq!(
        (
            prices.input_per_million,
            prices.cached_input_per_million_field(),
            prices.output_per_million
        ),
        (2_500_000, Some(250_000), 10_000_000),
        "the demo catalog's gpt-5.4"
    );
    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    let response = raw(running.server.addr(), Some(DEMO), body("gpt-5.4"), None).await;
    let (status, _, json) = envelope(response).await;
    assert_eq!(status, 200, "{json}");
    let usage = &json["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 20);
    // Uncached prompt tokens at $2.50, cached ones at $0.25, completion tokens (the reasoning
    // among them) at $10, per million, rounded up to the micro-unit.
    let expected =
        ((prompt - 4) * 2_500_000 + 4 * 250_000 + completion * 10_000_000).div_ceil(1_000_000);
    assert!(
        expected < prices.cost(prompt, completion),
        "the cache saved something"
    );
    let after = running.handles.ledger.balance("acct_demo").await.unwrap();
    assert_eq!(before - after, expected);
}

/// A Responses API stream reaches the upstream unchanged (usage injection is for chat), keeps
/// its named events, and when the upstream fails mid-stream ends with the Responses API's
/// `error` event; nothing is charged.
#[tokio::test]
async fn a_responses_stream_cut_mid_way_ends_with_the_responses_error_event() {
    let upstream = MockUpstream::builder()
        .model_behavior("gpt-5.4", Behavior::fault(Fault::AbortAfterChunks(2)))
        .start()
        .await;
    let running = start(upstream).await;
    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    let body =
        json!({"model": "gpt-5.4", "input": "Say hello", "stream": true, "max_output_tokens": 100})
            .to_string();
    let response = call(running.server.addr(), "POST", "/v1/responses", body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = body_text(response).await;
    let call = running.upstream.calls().pop().unwrap();
    assert_eq!(call.body, body, "the upstream got the body unchanged");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(
        events[0].starts_with("event: response.created\ndata: "),
        "{text}"
    );
    assert!(events[5].starts_with("event: response.output_text.delta\ndata: "));
    let (name, data) = events.last().unwrap().split_once('\n').unwrap();
    assert_eq!(name, "event: error", "{text}");
    let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        (&data["type"], &data["code"], &data["param"]),
        (&json!("error"), &json!("provider_error"), &Value::Null)
    );
    assert_eq!(
        data["sequence_number"], 6,
        "after the four opening events and two deltas"
    );
    assert!(data["message"].as_str().unwrap().contains("incomplete"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        running.handles.ledger.balance("acct_demo").await.unwrap(),
        before,
        "the reservation came back whole"
    );
}

/// Each metered endpoint is held to its own rules and its model's window before the provider
/// sees it: the Responses API, embeddings and legacy completions as well as chat.
#[tokio::test]
async fn every_endpoint_is_validated_before_the_upstream() {
    let running = start(MockUpstream::start().await).await;
    let too_long = "hello world ".repeat(2_100);
    let cases = [
        (
            "/v1/responses",
            json!({"model": "gpt-5.4", "input": "Hi", "max_output_tokens": 5}),
            400,
            "max_output_tokens",
            "integer_below_min_value",
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "Hi"}]}),
            400,
            "input",
            "",
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["a", ""]}),
            400,
            "input[1]",
            "",
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": vec!["a"; 2_049]}),
            400,
            "input",
            "array_above_max_length",
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "max_tokens": 5}),
            400,
            "prompt",
            "",
        ),
        // 4,201 tokens and the default 16 over the model's 4,096.
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": too_long}),
            413,
            "prompt",
            "context_length_exceeded",
        ),
    ];
    for (path, body, status, param, code) in cases {
        let response = call(running.server.addr(), "POST", path, body.to_string()).await;
        let (got, _, json) = envelope(response).await;
        assert_eq!(got, status, "{path} {json}");
        assert_eq!(json["error"]["param"], param, "{path} {json}");
        assert_eq!(
            json["error"]["code"].as_str().unwrap_or_default(),
            code,
            "{path} {json}"
        );
    }
    assert!(
        running.upstream.calls().is_empty(),
        "nothing reached the provider"
    );
    // And a well-formed request of each passes.
    for (path, body) in [
        (
            "/v1/responses",
            json!({"model": "gpt-5.4", "input": "Hi", "max_output_tokens": 16}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]]}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["Once", "Twice"], "max_tokens": 5}),
        ),
    ] {
        let response = call(running.server.addr(), "POST", path, body.to_string()).await;
        assert_eq!(response.status(), 200, "{path}");
    }
}

/// A response that continues a stored conversation reads earlier turns the body does not
/// show: the balance gate reserves for the whole window, less the output budget.
#[tokio::test]
async fn a_continued_response_is_reserved_for_the_whole_window() {
    let running = start(MockUpstream::start().await).await;
    let before = running.handles.ledger.balance("acct_demo").await.unwrap();
    let body = json!({"model": "gpt-5.4", "input": "And then?", "previous_response_id": "resp_1", "max_output_tokens": 100});
    let response = call(
        running.server.addr(),
        "POST",
        "/v1/responses",
        body.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let left: u64 = response.headers()["x-tollgate-balance-unreserved"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let prices = running
        .handles
        .catalog
        .current()
        .get("gpt-5.4")
        .unwrap()
        .info
        .prices;
    // gpt-5.4's window is 400,000 tokens.
    assert_eq!(before - left, prices.cost(400_000 - 100, 100));
}

/// A client's request id is kept only when it is a short safe token: a forged one used to reach
/// the log line, the usage record and the envelope verbatim.
#[tokio::test]
async fn only_a_safe_client_request_id_is_kept() {
    let running = start(MockUpstream::start().await).await;
    let send = |id: &'static str| {
        let request = Request::post("/v1/chat/completions")
            .header("host", "gateway")
            .header("authorization", format!("Bearer {BROKE}"))
            .header("x-request-id", id)
            .body(Full::new(Bytes::from(body("gpt-5.4").to_string())))
            .unwrap();
        tollgate_testkit::send(running.server.addr(), request)
    };
    let (_, headers, json) = envelope(send("req_client-1.a").await.unwrap()).await;
    assert_eq!(headers["x-request-id"], "req_client-1.a");
    assert_eq!(json["request_id"], "req_client-1.a");
    let long: &'static str = "a".repeat(65).leak();
    for forged in [r#"abc}: served key_id="key_admin""#, "a b", long] {
        let (status, headers, json) = envelope(send(forged).await.unwrap()).await;
        assert_eq!(status, 402);
        let id = headers["x-request-id"].to_str().unwrap();
        assert_ne!(id, forged);
        assert!(tollgate::core::request_id::is_safe_request_id(id), "{id}");
        assert_eq!(json["request_id"], id);
    }
}

/// A request the balance gate refuses never reached the provider: the tokens the rate limiter
/// charged for it come back (two refused large requests used to starve the key for a minute).
#[tokio::test]
async fn a_request_refused_further_in_does_not_spend_the_quota() {
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.limits.tokens_per_minute = Some(150_000);
    let upstream = MockUpstream::start().await;
    let Running {
        server,
        upstream,
        handles,
    } = start_with(&config, upstream).await;
    let large = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000});
    for attempt in 0..3 {
        let (status, headers, json) =
            envelope(raw(server.addr(), Some(BROKE), large.clone(), None).await).await;
        assert_eq!(status, 402, "attempt {attempt}: {json}");
        let remaining: u64 = headers["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            remaining < 50_000,
            "the headers show the charge at the time"
        );
    }
    handles
        .ledger
        .top_up("acct_broke", 5_000_000)
        .await
        .unwrap();
    let response = raw(server.addr(), Some(BROKE), large, None).await;
    assert_eq!(response.status(), 200, "the quota is whole");
    assert_eq!(upstream.calls().len(), 1);
}

/// The total timeout covers the whole exchange: a stream still running when it passes is cut
/// with the endpoint's terminal error event (it used to cover only the time to the head).
#[tokio::test]
async fn a_stream_past_the_total_timeout_is_cut_with_an_error_event() {
    let upstream = MockUpstream::builder()
        .chunks(40)
        .chunk_delay(Duration::from_millis(100))
        .start()
        .await;
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.upstream.total_timeout_secs = 1;
    let Running {
        server,
        upstream: _upstream,
        handles,
    } = start_with(&config, upstream).await;
    let before = handles.ledger.balance("acct_demo").await.unwrap();
    let started = std::time::Instant::now();
    let mut stream_body = body("gpt-5.4");
    stream_body["stream"] = json!(true);
    let response = raw(server.addr(), Some(DEMO), stream_body, None).await;
    assert_eq!(response.status(), 200);
    let text = body_text(response).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(2_500),
        "cut near 1 s, not after the 4 s stream: {elapsed:?}"
    );
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let error: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["type"], "timeout", "{text}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("total timeout of 1s"),
        "{error}"
    );
    assert!(!text.contains("[DONE]"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = handles.ledger.balance("acct_demo").await.unwrap();
    assert!(
        after <= before,
        "what was streamed is billed, never more than reserved"
    );
}
