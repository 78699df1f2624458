//! One request through `MetricsLayer` (into tollgate's `TextRecorder`, and into
//! metrics-exporter-prometheus's, with the telemetry a full stack writes) and the same request
//! straight to the same inner service, in one run: the difference is the layer's cost per
//! request.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusBuilder;
use tollgate_core::{Body, Principal, Telemetry, Usage};
use tollgate_metrics::{MetricsLayer, TextRecorder};
use tower::{Layer, Service, service_fn};

const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;

fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// What the stack below the metrics layer reports, as the real layers do.
async fn upstream(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    if let Some(telemetry) = request.extensions().get::<Telemetry>() {
        telemetry.set_principal(&PRINCIPAL.with(Clone::clone));
        telemetry.set_requested_model("gpt-5.4");
        telemetry.add_attempt();
        telemetry.add_upstream_time(Duration::from_micros(50));
        telemetry.set_usage(Usage::new(12, 3), 42);
    }
    Ok(Response::new(Body::from(ANSWER)))
}

thread_local! {
    static PRINCIPAL: Principal = Principal::new("key_1", "acct_1");
}

/// One request, with or without a client `traceparent` to continue.
fn one<S>(service: &mut S, traced: bool)
where
    S: Service<Request<Body>, Error = Infallible>,
    S::Response: IntoBody,
{
    let mut request = Request::post("/v1/chat/completions");
    if traced {
        request = request.header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
    }
    let response = now(service.call(request.body(Body::empty()).unwrap())).unwrap();
    black_box(now(response.collect_body()));
}

trait IntoBody {
    fn collect_body(self) -> impl Future<Output = usize>;
}

impl<B: http_body::Body + Unpin> IntoBody for Response<B> {
    async fn collect_body(self) -> usize {
        match self.into_body().collect().await {
            Ok(collected) => collected.to_bytes().len(),
            Err(_) => 0,
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    let mut bare = service_fn(upstream);
    for (name, traced) in [("bare", false), ("bare, traceparent", true)] {
        group.bench_function(name, |b| b.iter(|| one(&mut bare, traced)));
    }
    let recorder = TextRecorder::new();
    let mut measured = MetricsLayer::new()
        .recorder(recorder.clone())
        .layer(service_fn(upstream));
    for (name, traced) in [("layer", false), ("layer, traceparent", true)] {
        group.bench_function(name, |b| b.iter(|| one(&mut measured, traced)));
    }
    black_box(recorder.render());
    // The same through metrics-exporter-prometheus, whose histograms keep samples until drained.
    let exporter = tollgate_metrics::prometheus::gen_ai_buckets(PrometheusBuilder::new())
        .unwrap()
        .build_recorder();
    let handle = exporter.handle();
    let mut measured = MetricsLayer::new()
        .recorder(exporter)
        .layer(service_fn(upstream));
    group.bench_function("layer, metrics-exporter-prometheus", |b| {
        b.iter(|| one(&mut measured, false));
        // Scrapes drain the histogram samples, as a real scraper does every few seconds.
        handle.run_upkeep();
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
