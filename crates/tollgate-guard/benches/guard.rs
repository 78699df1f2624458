//! Guard cost: a 1 KB chat request (the byte bound decides, no tokenizing) and a ~100k-token
//! prompt near the window (tokenized), next to the bare inner service.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tollgate_core::{Body, ModelInfo, PromptTokens};
use tollgate_guard::RequestGuardLayer;
use tower::{Layer, Service, service_fn};

fn request(body: &Bytes, model: &ModelInfo) -> Request<Body> {
    let mut request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    request.extensions_mut().insert(model.clone());
    request
}

/// The request body is in memory and the inner service answers at once: one poll completes.
fn call_once<S: Service<Request<Body>, Error = Infallible>>(
    service: &mut S,
    request: Request<Body>,
) -> S::Response {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(service.call(request)).poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("the bench answers on the first poll"),
    }
}

fn chat_body(text: &str) -> Bytes {
    let body = serde_json::json!({
        "model": "gpt-5.4",
        "messages": [
            {"role": "system", "content": "You are a precise technical writer."},
            {"role": "user", "content": text}
        ],
        "max_tokens": 1000,
        "temperature": 0.7
    });
    Bytes::from(body.to_string())
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let inner = service_fn(|request: Request<Body>| async move {
        let tokens = request.extensions().get::<PromptTokens>().copied();
        Ok::<_, Infallible>(Response::new(tokens))
    });
    let mut guarded = RequestGuardLayer::new().layer(inner);
    let mut bare = inner;

    let small = chat_body(&"Describe API rate limits in two sentences. ".repeat(21));
    assert!((1000..1200).contains(&small.len()), "{}", small.len());
    let small_model = ModelInfo::new("gpt-5.4", 400_000, 128_000);

    // ~100k tokens of prose, in a window it fits only by an exact count.
    let prose = "The quick brown fox jumps over the lazy dog while the gateway counts tokens. "
        .repeat(6_250);
    let large = chat_body(&prose);
    let large_model = ModelInfo::new("gpt-5.4", 110_000, 8_000);

    let mut group = c.benchmark_group("guard");
    group.bench_function("inner service alone, 1 KB", |b| {
        b.iter(|| black_box(call_once(&mut bare, request(&small, &small_model))))
    });
    group.bench_function("through RequestGuard, 1 KB (byte bound)", |b| {
        b.iter(|| black_box(call_once(&mut guarded, request(&small, &small_model))))
    });
    group.sample_size(20);
    group.bench_function(
        "through RequestGuard, ~100k tokens near the window (tokenized)",
        |b| b.iter(|| black_box(call_once(&mut guarded, request(&large, &large_model)))),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
