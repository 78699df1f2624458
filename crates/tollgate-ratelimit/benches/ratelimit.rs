//! One request through our RateLimit and through tower_governor's layer, in the same run, on
//! the same inner service, keyed by the same principal.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tollgate_core::{Principal, Rate};
use tollgate_ratelimit::{Limits, RateLimitLayer};
use tower::{Layer, Service, service_fn};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

/// tower_governor keyed like ours: by the principal's key id.
#[derive(Clone)]
struct PrincipalKey;

impl KeyExtractor for PrincipalKey {
    type Key = std::sync::Arc<str>;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        request
            .extensions()
            .get::<Principal>()
            .map(|principal| principal.key_id_shared().clone())
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

fn request() -> Request<Body> {
    let mut request = Request::post("/v1/chat/completions")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(Principal::new("key_bench", "acct_bench"));
    request
}

fn call_once<S: Service<Request<Body>>>(service: &mut S) -> S::Response {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(service.call(request())).poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("every service here answers on the first poll"),
    }
}

fn bench(c: &mut Criterion) {
    let inner =
        service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    // Generous quotas: nothing is denied during the run; both pay for a real GCRA update.
    let ours = RateLimitLayer::new().per_key(
        Limits::new().requests(
            Rate::per_second(1_000_000)
                .unwrap()
                .with_burst(u64::from(u32::MAX))
                .unwrap(),
        ),
    );
    let mut ours = ours.layer(inner);
    let plain = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(PrincipalKey)
        .finish()
        .unwrap();
    let mut governor_plain = GovernorLayer::new(plain).layer(inner);
    let headers = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(PrincipalKey)
        .use_headers()
        .finish()
        .unwrap();
    let mut governor_headers = GovernorLayer::new(headers).layer(inner);
    let mut bare = inner;

    assert_eq!(
        call_once(&mut ours).headers()["x-ratelimit-limit"],
        "1000000"
    );
    assert!(
        call_once(&mut governor_headers)
            .headers()
            .contains_key("x-ratelimit-remaining")
    );

    let mut group = c.benchmark_group("ratelimit");
    group.bench_function("inner service alone", |b| {
        b.iter(|| black_box(call_once(&mut bare)))
    });
    group.bench_function("tower_governor", |b| {
        b.iter(|| black_box(call_once(&mut governor_plain)))
    });
    group.bench_function("tower_governor with headers", |b| {
        b.iter(|| black_box(call_once(&mut governor_headers)))
    });
    group.bench_function("tollgate RateLimit (3 headers)", |b| {
        b.iter(|| black_box(call_once(&mut ours)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
