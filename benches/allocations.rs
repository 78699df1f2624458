//! Heap allocations per request through the example gateway's stack, against a bare forward
//! of the same request (`cargo bench --bench allocations`).
//!
//! The counting allocator (`allocation-counter`) counts per thread. The requests run on one
//! current-thread runtime, so the stack and its upstream client are counted; the mock upstream
//! serves from a runtime of its own, on other threads, and is not. Neither side counts the
//! inbound HTTP server, which a bare proxy and the gateway share.

#[path = "../examples/gateway/backends.rs"]
#[allow(dead_code)]
mod backends;
#[path = "../examples/gateway/config.rs"]
#[allow(dead_code)]
mod config;
#[path = "../examples/gateway/stack.rs"]
#[allow(dead_code)]
mod stack;

use std::time::Duration;

use allocation_counter::AllocationInfo;
use http::{Request, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tollgate::core::Body;
use tollgate_testkit::MockUpstream;
use tower::ServiceExt;

const DEMO_KEY: &str = "sk-llmaai-demo-0123456789abcdef0123456789abcdef";
const REQUESTS: u64 = 2_000;

fn main() {
    let mock_runtime = tokio::runtime::Runtime::new().expect("a runtime for the mock upstream");
    let upstream = mock_runtime.block_on(MockUpstream::builder().record_calls(false).start());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the requests");

    let body = chat_body();
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build_http::<Body>();
    let direct = format!("{}/v1/chat/completions", upstream.url());
    let bare = per_request(&runtime, || {
        let client = client.clone();
        let request = chat_request(direct.parse().expect("a URI"), &body);
        async move {
            let response = client.request(request).await.expect("the mock answers");
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.expect("a body");
        }
    });

    let mut rows = vec![("bare forward (hyper-util client)", bare)];
    for (name, metrics) in [
        ("gateway, metrics on", true),
        ("gateway, metrics off", false),
    ] {
        let config = bench_config(metrics);
        let (gateway, _handles) = runtime
            .block_on(stack::build(&config, &upstream.url(), Some("sk-provider")))
            .expect("the example stack");
        let counted = per_request(&runtime, || {
            let request = chat_request(Uri::from_static("/v1/chat/completions"), &body);
            let gateway = gateway.clone();
            async move {
                let response = gateway.oneshot(request).await.expect("infallible");
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.expect("a body");
            }
        });
        rows.push((name, counted));
    }

    println!("| path | allocations per request | bytes allocated per request |");
    println!("| --- | --- | --- |");
    for (name, info) in rows {
        println!(
            "| {name} | {:.1} | {:.0} |",
            info.count_total as f64 / REQUESTS as f64,
            info.bytes_total as f64 / REQUESTS as f64,
        );
    }
}

/// What [`REQUESTS`] requests made by `request` allocate on this thread, after a warm-up that
/// opens the pooled connections and fills the lazily built tables.
fn per_request<F, Fut>(runtime: &tokio::runtime::Runtime, request: F) -> AllocationInfo
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    runtime.block_on(async {
        for _ in 0..100 {
            request().await;
        }
    });
    allocation_counter::measure(|| {
        runtime.block_on(async {
            for _ in 0..REQUESTS {
                request().await;
            }
        });
    })
}

fn chat_request(uri: Uri, body: &bytes::Bytes) -> Request<Body> {
    Request::post(uri)
        .header("authorization", format!("Bearer {DEMO_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .expect("a valid request")
}

/// The load test's 1 KB chat body.
fn chat_body() -> bytes::Bytes {
    let filler = "lorem ipsum dolor sit amet ".repeat(34);
    let body = format!(
        r#"{{"model":"gpt-5.4","max_tokens":16,"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    );
    bytes::Bytes::from(body)
}

/// The embedded configuration with `scripts/loadtest`'s limits (every layer works, none
/// rejects), the metrics layer on or off.
fn bench_config(metrics: bool) -> config::Config {
    let text: String = config::DEFAULT_CONFIG
        .lines()
        .map(|line| match line.split_once(" = ") {
            Some(("requests_per_minute", "60")) => "requests_per_minute = 1000000000".to_owned(),
            Some(("tokens_per_minute", _)) => "tokens_per_minute = 1000000000000".to_owned(),
            Some(("model_requests_per_minute", _)) => {
                "model_requests_per_minute = 1000000000".to_owned()
            }
            Some(("balance", "5000000")) => "balance = 1000000000000000".to_owned(),
            Some(("enabled", "true")) => format!("enabled = {metrics}"),
            _ => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect();
    config::Config::parse(&text).expect("the bench configuration")
}
