//! The demo gateway's metrics end to end: a scripted mix of requests over TCP (successes,
//! streams, a client hang-up, an upstream abort, every rejection, a retry and a fallback),
//! then a scrape of `/metrics` on the admin listener, checked series by series.

#[allow(dead_code)]
#[path = "../examples/gateway/backends.rs"]
mod backends;
#[allow(dead_code)]
#[path = "../examples/gateway/config.rs"]
mod config;
#[allow(dead_code)]
#[path = "../examples/gateway/stack.rs"]
mod stack;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate::balance::Ledger;
use tollgate_testkit::{Behavior, MockUpstream, TestServer};

const DEMO: &str = "sk-llmaai-demo-0123456789abcdef0123456789abcdef";
const BROKE: &str = "sk-llmaai-broke-0123456789abcdef0123456789abcd";
const MINI: &str = "sk-llmaai-mini-0123456789abcdef0123456789abcde";

/// `POST path` with `key`, `body` and an optional `x-mock` directive: the status and the
/// error type of the envelope, if any. The body is read to its end.
async fn send(
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    body: impl Into<Bytes>,
    mock: Option<&str>,
) -> (u16, String) {
    let response = tollgate_testkit::send(addr, request(path, key, body, mock))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let error = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|json| json["error"]["type"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, error)
}

fn request(
    path: &str,
    key: Option<&str>,
    body: impl Into<Bytes>,
    mock: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut request = Request::post(path)
        .header("host", "gateway")
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if let Some(mock) = mock {
        request = request.header("x-mock", mock);
    }
    request.body(Full::new(body.into())).unwrap()
}

fn chat(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 100,
        "stream": stream,
    })
    .to_string()
}

/// The value of the one series `name` with all of `labels` (and no other series of that name
/// matching them), or `None`.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&str> = scrape
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {matching:?}"
    );
    matching.first()?.rsplit(' ').next()?.parse().ok()
}

/// Every value of `name` matching `labels`, added up.
fn total(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(admin: &TestServer) -> String {
    let request = Request::get("/metrics")
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tollgate_testkit::send(admin.addr(), request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_scripted_mix_shows_in_every_series_and_the_gauges_return_to_zero() {
    let upstream = MockUpstream::builder()
        .model_behavior_times("gpt-4.1", Behavior::status(503), 1)
        .model_behavior("gpt-5.4", Behavior::status(502))
        .start()
        .await;
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.upstream.max_retries = 1;
    config.guard.max_body_bytes = 64 * 1024;
    let (gateway, handles) = stack::build(&config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    let handles = Arc::new(handles);
    let admin = stack::admin_listener(&handles, &config, None)
        .unwrap()
        .unwrap();
    let admin = TestServer::start(admin).await;
    let server = TestServer::start(gateway).await;
    let addr = server.addr();
    let before = handles.ledger.balance("acct_demo").await.unwrap();
    let completions = "/v1/chat/completions";

    // A retry: gpt-4.1 fails once, then answers.
    assert_eq!(
        send(addr, completions, Some(DEMO), chat("gpt-4.1", false), None).await,
        (200, String::new())
    );
    // A fallback: gpt-5.4 fails twice (one retry), gpt-5.4-mini answers.
    assert_eq!(
        send(addr, completions, Some(DEMO), chat("gpt-5.4", false), None).await,
        (200, String::new())
    );
    // Successes.
    for _ in 0..2 {
        assert_eq!(
            send(
                addr,
                completions,
                Some(DEMO),
                chat("gpt-5.4-mini", false),
                None
            )
            .await
            .0,
            200
        );
    }
    let embedding = json!({"model": "text-embedding-3-small", "input": "hello"}).to_string();
    assert_eq!(
        send(addr, "/v1/embeddings", Some(DEMO), embedding, None)
            .await
            .0,
        200
    );

    // A stream read to its end.
    assert_eq!(
        send(
            addr,
            completions,
            Some(DEMO),
            chat("gpt-4.1", true),
            Some("chunks=5")
        )
        .await,
        (200, String::new())
    );
    // A client that hangs up mid-stream.
    let response = tollgate_testkit::send(
        addr,
        request(
            completions,
            Some(DEMO),
            chat("gpt-4.1", true),
            Some("chunks=50; chunk-delay-ms=40"),
        ),
    )
    .await
    .unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body);
    // An upstream that aborts mid-stream: the client gets a terminal error event.
    assert_eq!(
        send(
            addr,
            completions,
            Some(DEMO),
            chat("gpt-4.1", true),
            Some("abort-after=2")
        )
        .await
        .0,
        200
    );

    // Every rejection.
    let mut rejections = Vec::new();
    rejections.push(send(addr, completions, None, chat("gpt-5.4-mini", false), None).await);
    rejections.push(
        send(
            addr,
            completions,
            Some(BROKE),
            chat("gpt-5.4-mini", false),
            None,
        )
        .await,
    );
    rejections.push(send(addr, completions, Some(MINI), chat("gpt-4.1", false), None).await);
    rejections.push(send(addr, completions, Some(DEMO), chat("gpt-9", false), None).await);
    rejections.push(send(addr, completions, Some(DEMO), chat("gpt-4o", false), None).await);
    let huge = json!({"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "x".repeat(70_000)}]});
    rejections.push(send(addr, completions, Some(DEMO), huge.to_string(), None).await);
    // The mini key may send 5 requests a minute: the sixth is refused.
    for _ in 0..5 {
        assert_eq!(
            send(
                addr,
                completions,
                Some(MINI),
                chat("gpt-5.4-mini", false),
                None
            )
            .await
            .0,
            200
        );
    }
    rejections.push(
        send(
            addr,
            completions,
            Some(MINI),
            chat("gpt-5.4-mini", false),
            None,
        )
        .await,
    );
    let statuses: Vec<u16> = rejections.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [401, 402, 403, 404, 410, 413, 429]);

    // The hang-up is seen when the gateway next writes to the closed connection.
    let chat_route = [("http_route", "/v1/chat/completions")];
    let mut text = scrape(&admin).await;
    for _ in 0..100 {
        if value(&text, "tollgate_server_active_requests", &chat_route) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = scrape(&admin).await;
    }
    assert_eq!(
        value(&text, "tollgate_server_active_requests", &chat_route),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "tollgate_server_active_streams", &chat_route),
        Some(0.0),
        "{text}"
    );

    let outcome = |requested: &str, served: &str, status: &str, error: &str| {
        value(
            &text,
            "tollgate_requests",
            &[
                ("gen_ai_request_model", requested),
                ("gen_ai_response_model", served),
                ("http_response_status_code", status),
                ("error_type", error),
            ],
        )
    };
    assert_eq!(
        outcome("gpt-4.1", "gpt-4.1", "200", ""),
        Some(2.0),
        "{text}"
    );
    assert_eq!(outcome("gpt-4.1", "gpt-4.1", "200", "cancelled"), Some(1.0));
    assert_eq!(
        outcome("gpt-4.1", "gpt-4.1", "200", "provider_error"),
        Some(1.0)
    );
    assert_eq!(outcome("gpt-5.4", "gpt-5.4-mini", "200", ""), Some(1.0));
    assert_eq!(
        outcome("gpt-5.4-mini", "gpt-5.4-mini", "200", ""),
        Some(7.0)
    );
    assert_eq!(
        value(
            &text,
            "tollgate_requests",
            &[
                ("gen_ai_operation_name", "embeddings"),
                ("gen_ai_request_model", "text-embedding-3-small")
            ]
        ),
        Some(1.0)
    );
    // Rejections: by status and type, with the model when the catalog knows it.
    let expected_models = [
        "",
        "gpt-5.4-mini",
        "gpt-4.1",
        "",
        "gpt-4o",
        "",
        "gpt-5.4-mini",
    ];
    for ((status, error), model) in rejections.iter().zip(expected_models) {
        assert!(!error.is_empty(), "{status} without an error type");
        assert_eq!(
            outcome(model, "", &status.to_string(), error),
            Some(1.0),
            "{status} {error} {model}\n{text}"
        );
    }
    // The durations count every request of an outcome.
    assert_eq!(
        value(
            &text,
            "gen_ai_server_request_duration_count",
            &[
                ("gen_ai_request_model", "gpt-5.4-mini"),
                ("gen_ai_response_model", "gpt-5.4-mini"),
                ("http_response_status_code", "200")
            ]
        ),
        Some(7.0)
    );
    assert_eq!(
        total(&text, "tollgate_server_time_to_response_head_count", &[]),
        20.0
    );

    // Streams: a first token for each of the three, a time per token for the one that ended well.
    let gpt_41 = [
        ("gen_ai_request_model", "gpt-4.1"),
        ("gen_ai_response_model", "gpt-4.1"),
    ];
    assert_eq!(
        value(&text, "gen_ai_server_time_to_first_token_count", &gpt_41),
        Some(3.0)
    );
    assert_eq!(
        value(&text, "gen_ai_server_time_per_output_token_count", &gpt_41),
        Some(1.0)
    );
    // Attempts: the retry's two and one per stream; the fallback's two on gpt-5.4 and one on
    // gpt-5.4-mini.
    assert_eq!(
        value(&text, "tollgate_upstream_attempts", &gpt_41),
        Some(5.0)
    );
    assert_eq!(
        value(&text, "tollgate_upstream_retries", &gpt_41),
        Some(1.0)
    );
    let fallback = [
        ("gen_ai_request_model", "gpt-5.4"),
        ("gen_ai_response_model", "gpt-5.4-mini"),
    ];
    assert_eq!(
        value(&text, "tollgate_upstream_attempts", &fallback),
        Some(3.0)
    );
    assert_eq!(
        value(&text, "tollgate_upstream_retries", &fallback),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "tollgate_upstream_fallbacks", &fallback),
        Some(1.0)
    );

    // Tokens: every answered request but the aborted stream reported (or was charged) usage.
    let mini = [
        ("gen_ai_request_model", "gpt-5.4-mini"),
        ("gen_ai_response_model", "gpt-5.4-mini"),
    ];
    let input = [&mini[..], &[("gen_ai_token_type", "input")]].concat();
    assert_eq!(
        value(&text, "gen_ai_client_token_usage_count", &input),
        Some(7.0)
    );
    assert!(value(&text, "gen_ai_client_token_usage_sum", &input).unwrap() > 0.0);
    // The cost the metrics counted is what the account paid.
    let after = handles.ledger.balance("acct_demo").await.unwrap();
    assert_eq!(
        total(&text, "tollgate_cost", &[]),
        (before - after) as f64,
        "{text}"
    );
    // The gateway's own time is measured apart from the provider's.
    assert_eq!(total(&text, "tollgate_server_overhead_count", &[]), 20.0);
}

#[tokio::test]
async fn usage_records_reach_the_file_and_match_what_was_charged() {
    let dir = std::env::temp_dir().join(format!("tollgate-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let upstream = MockUpstream::start().await;
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.usage = Some(
        config::Config::parse(&format!(
            "{}\n[usage]\ndir = {:?}\n",
            config::DEFAULT_CONFIG,
            dir.display().to_string()
        ))
        .unwrap()
        .usage
        .unwrap(),
    );
    let (gateway, handles) = stack::build(&config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    let server = TestServer::start(gateway).await;
    let before = handles.ledger.balance("acct_demo").await.unwrap();
    for model in ["gpt-5.4-mini", "gpt-4.1", "gpt-5.4"] {
        let (status, _) = send(
            server.addr(),
            "/v1/chat/completions",
            Some(DEMO),
            chat(model, false),
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let sink = handles.metrics.usage.clone().unwrap();
    sink.flush_and_wait();
    let text = std::fs::read_to_string(dir.join("usage.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let models: Vec<&str> = records
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["gpt-5.4-mini", "gpt-4.1", "gpt-5.4"]);
    let charged: u64 = records.iter().map(|r| r["cost"].as_u64().unwrap()).sum();
    let after = handles.ledger.balance("acct_demo").await.unwrap();
    assert_eq!(charged, before - after);
    assert_eq!(sink.dropped(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_provider_sees_the_clients_trace_as_it_came() {
    let upstream = MockUpstream::start().await;
    let config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    let (gateway, _handles) = stack::build(&config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    let server = TestServer::start(gateway).await;
    let mut traced = request(
        "/v1/chat/completions",
        Some(DEMO),
        chat("gpt-5.4-mini", false),
        None,
    );
    let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    traced
        .headers_mut()
        .insert("traceparent", client.parse().unwrap());
    traced
        .headers_mut()
        .insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    let response = tollgate_testkit::send(server.addr(), traced).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    // Without one, and with no span exported, there is no trace to send.
    let (status, _) = send(
        server.addr(),
        "/v1/chat/completions",
        Some(DEMO),
        chat("gpt-5.4-mini", false),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let calls = upstream.calls();
    // The example records no span of its own: the client's stays the parent.
    assert_eq!(calls[0].header("traceparent"), Some(client));
    assert_eq!(calls[0].header("tracestate"), Some("congo=t61rcWkgMzE"));
    assert_eq!(calls[1].header("traceparent"), None);
    assert_eq!(calls[1].header("tracestate"), None);
}
