//! Hot reload of the demo gateway's catalog, keys and limits while it serves, over TCP: what a
//! reload changes, what a broken file does not, and requests under continuous reloads.

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate_testkit::{MockUpstream, TestServer};

const DEMO: &str = "sk-llmaai-demo-0123456789abcdef0123456789abcdef";
const NEW_KEY: &str = "sk-llmaai-new-0123456789abcdef0123456789abcdef0";

fn config(text: &str) -> config::Config {
    let mut config = config::Config::parse(text).unwrap();
    config.upstream.max_retries = 0;
    config
}

/// The embedded configuration with gpt-4.1 retired instead of deprecated.
fn retiring_gpt_4_1() -> String {
    let text = config::DEFAULT_CONFIG.replace(
        "status = \"deprecated\"\ndeprecated_on = \"2026-04-14\"\nsunset = \"2026-12-31\"",
        "status = \"retired\"\nretired_on = \"2026-11-30\"",
    );
    assert_ne!(
        text,
        config::DEFAULT_CONFIG,
        "the sample changed: update this test"
    );
    text
}

async fn start(config: &config::Config, upstream: &MockUpstream) -> (TestServer, stack::Handles) {
    let (gateway, handles) = stack::build(config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    (TestServer::start(gateway).await, handles)
}

fn request(key: &str, body: Value) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("host", "gateway")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20})
}

async fn status(addr: SocketAddr, key: &str, model: &str) -> (u16, Value) {
    let response = tollgate_testkit::send(addr, request(key, chat(model)))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_reload_retires_a_model_while_a_stream_started_before_it_finishes() {
    let upstream = MockUpstream::builder()
        .chunk_delay(Duration::from_millis(50))
        .start()
        .await;
    let (server, handles) = start(&config(config::DEFAULT_CONFIG), &upstream).await;
    let mut body = chat("gpt-4.1");
    body["stream"] = json!(true);
    let response = tollgate_testkit::send(server.addr(), request(DEMO, body))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "deprecated, still served");
    let mut stream = response.into_body();
    let first = stream.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some());

    handles.reload(&config(&retiring_gpt_4_1())).await.unwrap();
    let (code, error) = status(server.addr(), DEMO, "gpt-4.1").await;
    assert_eq!(code, 410, "retired from the next request on: {error}");
    assert_eq!(error["error"]["code"], "model_retired");

    let rest = stream.collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the stream finished normally: {text}"
    );
}

#[tokio::test]
async fn a_broken_file_changes_nothing_and_says_why() {
    let upstream = MockUpstream::start().await;
    let (server, handles) = start(&config(config::DEFAULT_CONFIG), &upstream).await;
    let broken = config::DEFAULT_CONFIG.replace(
        "fallbacks = [\"gpt-5.4-mini\"]",
        "fallbacks = [\"gpt-9-nonexistent\"]",
    );
    let mut broken = config(&broken);
    broken.limits.requests_per_minute = Some(1);
    let error = handles.reload(&broken).await.unwrap_err();
    assert!(error.contains("gpt-9-nonexistent"), "the reason: {error}");
    // Neither the catalog nor the limits changed.
    for _ in 0..3 {
        assert_eq!(status(server.addr(), DEMO, "gpt-4.1").await.0, 200);
    }
    let bad_key = config::DEFAULT_CONFIG.replace(
        "key = \"sk-llmaai-broke-0123456789abcdef0123456789abcd\"",
        "sha256 = \"not-a-digest\"",
    );
    let error = handles.reload(&config(&bad_key)).await.unwrap_err();
    assert!(
        error.contains("sha256"),
        "a key file error refuses the whole reload: {error}"
    );
    assert_eq!(status(server.addr(), DEMO, "gpt-4.1").await.0, 200);
}

#[tokio::test]
async fn a_reload_replaces_keys_and_limits() {
    let upstream = MockUpstream::start().await;
    let (server, handles) = start(&config(config::DEFAULT_CONFIG), &upstream).await;
    assert_eq!(status(server.addr(), NEW_KEY, "gpt-5.4").await.0, 401);
    let text = config::DEFAULT_CONFIG.replace(
        "key = \"sk-llmaai-broke-0123456789abcdef0123456789abcd\"",
        &format!("key = \"{NEW_KEY}\""),
    );
    let mut fresh = config(&text);
    fresh.limits.requests_per_minute = Some(2);
    let reloaded = handles.reload(&fresh).await.unwrap();
    assert_eq!(reloaded.keys, 3);
    let (code, _) = status(server.addr(), NEW_KEY, "gpt-5.4").await;
    assert_eq!(
        code, 402,
        "the new key is known (its account, acct_broke, is empty)"
    );
    let broke = "sk-llmaai-broke-0123456789abcdef0123456789abcd";
    assert_eq!(
        status(server.addr(), broke, "gpt-5.4").await.0,
        401,
        "the old key is gone"
    );
    // Two requests per minute now; the demo key has used none of them.
    assert_eq!(status(server.addr(), DEMO, "gpt-5.4").await.0, 200);
    assert_eq!(status(server.addr(), DEMO, "gpt-5.4").await.0, 200);
    let (code, error) = status(server.addr(), DEMO, "gpt-5.4").await;
    assert_eq!(code, 429, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_under_continuous_reloads_never_fail() {
    let upstream = MockUpstream::start().await;
    let mut base = config(config::DEFAULT_CONFIG);
    base.limits.requests_per_minute = Some(1_000_000);
    base.limits.model_requests_per_minute = Some(1_000_000);
    let (server, handles) = start(&base, &upstream).await;
    let mut other = config(&retiring_gpt_4_1());
    other.limits.requests_per_minute = Some(2_000_000);
    other.limits.model_requests_per_minute = Some(2_000_000);

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let addr = server.addr();
            tokio::spawn(async move {
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (code, body) = status(addr, DEMO, "gpt-5.4").await;
                    assert_eq!(code, 200, "failed under reloads: {body}");
                    served += 1;
                }
                served
            })
        })
        .collect();
    let started = Instant::now();
    let mut reloads = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let next = if reloads % 2 == 0 { &other } else { &base };
        handles.reload(next).await.unwrap();
        reloads += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for load in loads {
        served += load.await.unwrap();
    }
    println!("{served} requests served, none failed, under {reloads} reloads in 10 s");
    assert!(
        reloads > 100 && served > 100,
        "{reloads} reloads, {served} requests"
    );
}

#[tokio::test]
async fn the_admin_api_reloads_the_file_or_says_why_not() {
    let upstream = MockUpstream::start().await;
    let path = std::env::temp_dir().join(format!("tollgate-reload-{}.toml", std::process::id()));
    std::fs::write(&path, config::DEFAULT_CONFIG).unwrap();
    let config = config(config::DEFAULT_CONFIG);
    let (server, handles) = start(&config, &upstream).await;
    let handles = Arc::new(handles);
    let path_text = path.to_str().unwrap().to_owned();
    let admin = stack::admin(&handles, &config, Some(path_text))
        .unwrap()
        .unwrap();
    let admin = TestServer::start(admin).await;
    let reload = || async {
        let request = Request::post("/admin/reload")
            .header("host", "admin")
            .header(
                "authorization",
                "Bearer adm-demo-0123456789abcdef0123456789abcdef",
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = tollgate_testkit::send(admin.addr(), request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };

    std::fs::write(&path, "[catalog\nbroken").unwrap();
    let (status, error) = reload().await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid gateway configuration")
    );
    assert_eq!(
        status_of(&server, "gpt-4.1").await,
        200,
        "the old catalog still serves"
    );

    std::fs::write(&path, retiring_gpt_4_1()).unwrap();
    let (status, reloaded) = reload().await;
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(status_of(&server, "gpt-4.1").await, 410);
    let _ = std::fs::remove_file(&path);
}

async fn status_of(server: &TestServer, model: &str) -> u16 {
    status(server.addr(), DEMO, model).await.0
}
