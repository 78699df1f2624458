//! One authenticated request through BearerAuth, next to the bare inner service.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tollgate_auth::{BearerAuthLayer, InMemoryKeyStore};
use tollgate_core::{Body, Principal};
use tower::{Layer, Service, service_fn};

const KEY: &str = "sk-llmaai-bench-000000000000000000000001";

fn request() -> Request<Body> {
    Request::builder()
        .uri("/v1/chat/completions")
        .header(
            "authorization",
            "Bearer sk-llmaai-bench-000000000000000000000001",
        )
        .body(Body::empty())
        .unwrap()
}

/// Both services are ready and answer without waiting: one poll completes the call.
fn call_once<S: Service<Request<Body>>>(service: &mut S) -> S::Response {
    let mut cx = Context::from_waker(Waker::noop());
    let future = pin!(service.call(request()));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("the bench services answer on the first poll"),
    }
}

fn bench(c: &mut Criterion) {
    let inner =
        service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    let store = InMemoryKeyStore::new().with_key(KEY, Principal::new("key_bench", "acct_bench"));
    // A realistic store: the key among 100,000 others.
    for n in 0..100_000 {
        store.insert(
            &format!("sk-llmaai-other-{n:024}"),
            Principal::new(format!("key_{n}"), "acct"),
        );
    }
    let mut authenticated = BearerAuthLayer::new(store)
        .required_prefix("sk-llmaai-")
        .layer(inner);
    let mut bare = inner;

    let mut group = c.benchmark_group("auth");
    group.bench_function("inner service alone", |b| {
        b.iter(|| black_box(call_once(&mut bare)))
    });
    group.bench_function("through BearerAuth", |b| {
        b.iter(|| black_box(call_once(&mut authenticated)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
