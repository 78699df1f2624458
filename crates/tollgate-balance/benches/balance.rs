//! One request through BalanceGate with the in-memory ledger: reserve, a JSON response read to
//! its end, settlement from its usage.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tollgate_balance::{BalanceGateLayer, InMemoryLedger, Ledger};
use tollgate_core::{Body, ModelInfo, Prices, Principal};
use tower::{Layer, Service, service_fn};

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}"#;

fn request() -> Request<Body> {
    let mut request = Request::post("/v1/chat/completions")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(Principal::new("key_bench", "acct_bench"));
    request.extensions_mut().insert(
        ModelInfo::new("gpt-5.4", 400_000, 1_000).prices(Prices::new(1_000_000, 2_000_000)),
    );
    request
}

/// Calls the service and reads the whole response body, all on the first poll.
fn call_and_read<S, B>(service: &mut S) -> usize
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(response)) = pin!(service.call(request())).poll(&mut cx) else {
        panic!("answers on the first poll");
    };
    let mut body = pin!(response.into_body());
    let mut read = 0;
    while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
        read += frame.data_ref().map_or(0, |data| data.len());
    }
    read
}

fn bench(c: &mut Criterion) {
    let inner = service_fn(|_: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from(COMPLETION)))
    });
    let ledger = InMemoryLedger::new();
    let mut cx = Context::from_waker(Waker::noop());
    let _ = pin!(ledger.top_up("acct_bench", u64::MAX / 2)).poll(&mut cx);
    let mut gated = BalanceGateLayer::new(ledger).layer(inner);
    let mut bare = inner;
    assert_eq!(call_and_read(&mut gated), COMPLETION.len());

    let mut group = c.benchmark_group("balance");
    group.bench_function("inner service alone", |b| {
        b.iter(|| black_box(call_and_read(&mut bare)))
    });
    group.bench_function("through BalanceGate (reserve, read, settle)", |b| {
        b.iter(|| black_box(call_and_read(&mut gated)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
