//! `MetricsLayer` through `oneshot`, scraped from a real Prometheus recorder.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tollgate_core::{Body, ErrorKind, GatewayError, ModelInfo, Principal, Telemetry, Usage};
use tollgate_metrics::MetricsLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

fn recorder() -> (MetricsLayer, PrometheusHandle) {
    let recorder = tollgate_metrics::prometheus::gen_ai_buckets(PrometheusBuilder::new())
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    (MetricsLayer::new().recorder(recorder), handle)
}

/// The value of the one series named `name` with every label of `labels`.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = scrape.lines().filter(|line| {
        line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
    });
    let line = found.find(|line| {
        labels
            .iter()
            .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
    })?;
    line.rsplit(' ').next()?.parse().ok()
}

fn chat() -> Request<Body> {
    Request::post("/v1/chat/completions")
        .body(Body::empty())
        .unwrap()
}

/// What the layers below a metrics layer report about a request a model answered.
fn served(request: &Request<Body>, usage: Usage, cost: u64) {
    let telemetry = request.extensions().get::<Telemetry>().unwrap();
    telemetry.set_principal(&Principal::new("key_1", "acct_1"));
    telemetry.set_requested_model("gpt-5.4");
    telemetry.add_attempt();
    telemetry.add_upstream_time(Duration::from_millis(5));
    telemetry.set_usage(usage, cost);
    telemetry.set_rate_limit_remaining(41);
    telemetry.set_balance_unreserved(9_000);
}

#[tokio::test]
async fn a_served_request_counts_its_outcome_tokens_cost_and_attempts() {
    let (layer, scrape) = recorder();
    let service = layer
        .key_labels(true)
        .layer(service_fn(|request: Request<Body>| async move {
            let usage = Usage::new(30, 18)
                .with_cached_tokens(10)
                .with_reasoning_tokens(4);
            served(&request, usage, 2_400);
            let waiting = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let telemetry = request.extensions().get::<Telemetry>().unwrap();
            telemetry.add_upstream_time(waiting.elapsed());
            Ok::<_, Infallible>(Response::new(Body::from("{}")))
        }));
    let response = service.oneshot(chat()).await.unwrap();
    response.into_body().collect().await.unwrap();

    let text = scrape.render();
    let outcome = [
        ("gen_ai_operation_name", "chat"),
        ("http_route", "/v1/chat/completions"),
        ("gen_ai_request_model", "gpt-5.4"),
        ("gen_ai_response_model", "gpt-5.4"),
        ("http_response_status_code", "200"),
        ("error_type", ""),
        ("tollgate_key_id", "key_1"),
    ];
    assert_eq!(
        value(&text, "tollgate_requests", &outcome),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gen_ai_server_request_duration_count", &outcome),
        Some(1.0)
    );
    let duration = value(&text, "gen_ai_server_request_duration_sum", &outcome).unwrap();
    assert!((0.005..1.0).contains(&duration), "{duration}");
    let models = &outcome[..4];
    let input = [models, &[("gen_ai_token_type", "input")]].concat();
    let output = [models, &[("gen_ai_token_type", "output")]].concat();
    assert_eq!(
        value(&text, "gen_ai_client_token_usage_sum", &input),
        Some(30.0)
    );
    assert_eq!(
        value(&text, "gen_ai_client_token_usage_sum", &output),
        Some(18.0)
    );
    assert_eq!(value(&text, "tollgate_tokens_cached", models), Some(10.0));
    assert_eq!(value(&text, "tollgate_tokens_reasoning", models), Some(4.0));
    assert_eq!(value(&text, "tollgate_cost", models), Some(2_400.0));
    assert_eq!(
        value(&text, "tollgate_upstream_attempts", models),
        Some(1.0)
    );
    assert_eq!(value(&text, "tollgate_upstream_retries", models), None);
    // Waiting on the provider is not the gateway's overhead.
    let overhead = value(&text, "tollgate_server_overhead_sum", &outcome[..2]).unwrap();
    assert!(overhead < duration - 0.005, "{overhead} of {duration}");
    assert_eq!(
        value(
            &text,
            "tollgate_ratelimit_remaining",
            &[("tollgate_key_id", "key_1")]
        ),
        Some(41.0)
    );
    // Account labels are off: no balance gauge.
    assert_eq!(value(&text, "tollgate_balance_unreserved", &[]), None);
    assert_eq!(
        value(&text, "tollgate_server_active_requests", &outcome[..2]),
        Some(0.0)
    );
    assert!(
        text.contains("# HELP gen_ai_server_request_duration"),
        "{text}"
    );
}

#[tokio::test]
async fn rejections_count_by_status_type_and_known_model() {
    let (layer, scrape) = recorder();
    let service = layer.layer(service_fn(|request: Request<Body>| async move {
        let telemetry = request.extensions().get::<Telemetry>().unwrap();
        let error = match request.uri().path() {
            "/v1/embeddings" => {
                telemetry.set_requested_model("text-embedding-3-small");
                GatewayError::new(ErrorKind::RateLimitExceeded, "slow down")
            }
            _ => GatewayError::new(ErrorKind::ModelNotFound, "no such model"),
        };
        Ok::<_, Infallible>(error.into_response().map(Body::new))
    }));
    for path in ["/v1/embeddings", "/v1/embeddings", "/v1/chat/completions"] {
        let request = Request::post(path).body(Body::empty()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    let text = scrape.render();
    let limited = [
        ("gen_ai_operation_name", "embeddings"),
        ("gen_ai_request_model", "text-embedding-3-small"),
        ("gen_ai_response_model", ""),
        ("http_response_status_code", "429"),
        ("error_type", "rate_limit_exceeded"),
    ];
    assert_eq!(
        value(&text, "tollgate_requests", &limited),
        Some(2.0),
        "{text}"
    );
    let unknown = [
        ("gen_ai_request_model", ""),
        ("http_response_status_code", "404"),
        ("error_type", "model_not_found"),
    ];
    assert_eq!(value(&text, "tollgate_requests", &unknown), Some(1.0));
    // No tokens, cost or attempts for requests that never reached a model.
    assert!(!text.contains("gen_ai_client_token_usage"), "{text}");
    assert!(!text.contains("tollgate_upstream_attempts"), "{text}");
}

#[tokio::test]
async fn raw_paths_never_become_labels() {
    let (layer, scrape) = recorder();
    let service = layer.layer(service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(
            GatewayError::new(ErrorKind::NotFound, "no")
                .into_response()
                .map(Body::new),
        )
    }));
    for path in ["/v1/secret-a", "/v1/secret-b", "/v1/models/gpt-5.4"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        service.clone().oneshot(request).await.unwrap();
    }
    let text = scrape.render();
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(
        value(&text, "tollgate_requests", &[("http_route", "other")]),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "tollgate_requests", &[("http_route", "/v1/models")]),
        Some(1.0)
    );
}

type Chunks = tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, Infallible>>;

/// A streamed response whose chunks the test sends.
fn stream() -> (Chunks, Response<Body>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let body = StreamBody::new(tokio_stream_of(receiver));
    let response = Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::new(body))
        .unwrap();
    (sender, response)
}

fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<http_body::Frame<Bytes>, Infallible>>,
) -> impl futures_core::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test]
async fn streams_measure_first_token_and_gauges_return_to_zero_however_they_end() {
    let (layer, scrape) = recorder();
    let responses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let source = responses.clone();
    let mut service = layer.layer(service_fn(move |request: Request<Body>| {
        let response = source.lock().unwrap().pop();
        async move {
            let (response, ending): (Response<Body>, fn(&Telemetry)) = response.unwrap();
            served(&request, Usage::new(10, 5), 100);
            ending(request.extensions().get::<Telemetry>().unwrap());
            Ok::<_, Infallible>(response)
        }
    }));
    let active =
        |text: &str, name: &str| value(text, name, &[("http_route", "/v1/chat/completions")]);

    // 1. A stream read to its end.
    let (chunks, response) = stream();
    responses.lock().unwrap().push((response, |_| ()));
    let response = service.ready().await.unwrap().call(chat()).await.unwrap();
    let mut body = response.into_body();
    chunks
        .send(Ok(http_body::Frame::data(Bytes::from("data: {}\n\n"))))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    let text = scrape.render();
    assert_eq!(active(&text, "tollgate_server_active_streams"), Some(1.0));
    assert_eq!(active(&text, "tollgate_server_active_requests"), Some(1.0));
    tokio::time::sleep(Duration::from_millis(20)).await;
    chunks
        .send(Ok(http_body::Frame::data(Bytes::from("data: [DONE]\n\n"))))
        .await
        .unwrap();
    drop(chunks);
    while body.frame().await.is_some() {}

    // 2. The client hangs up mid-stream.
    let (chunks, response) = stream();
    responses.lock().unwrap().push((response, |_| ()));
    let response = service.ready().await.unwrap().call(chat()).await.unwrap();
    let mut body = response.into_body();
    chunks
        .send(Ok(http_body::Frame::data(Bytes::from("data: {}\n\n"))))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body);

    // 3. The upstream fails mid-stream (the SSE layer reports the terminal error it sent).
    let (chunks, response) = stream();
    responses.lock().unwrap().push((response, |telemetry| {
        telemetry.set_stream_error(ErrorKind::ProviderError)
    }));
    let response = service.ready().await.unwrap().call(chat()).await.unwrap();
    drop(chunks);
    let mut body = response.into_body();
    while body.frame().await.is_some() {}

    // 4. The client hangs up before the response head.
    let pending = service.ready().await.unwrap().call(chat());
    drop(pending);

    let text = scrape.render();
    assert_eq!(
        active(&text, "tollgate_server_active_streams"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        active(&text, "tollgate_server_active_requests"),
        Some(0.0),
        "{text}"
    );
    let by_error = |status: &str, error: &str| {
        value(
            &text,
            "tollgate_requests",
            &[("http_response_status_code", status), ("error_type", error)],
        )
    };
    assert_eq!(by_error("200", ""), Some(1.0), "{text}");
    assert_eq!(by_error("200", "cancelled"), Some(1.0));
    assert_eq!(by_error("200", "provider_error"), Some(1.0));
    assert_eq!(by_error("", "cancelled"), Some(1.0));
    let models = [
        ("gen_ai_request_model", "gpt-5.4"),
        ("gen_ai_response_model", "gpt-5.4"),
    ];
    // Every stream that sent a chunk has a time to first token; only the one that ended well
    // a time per output token: 20 ms over 4 tokens after the first.
    assert_eq!(
        value(&text, "gen_ai_server_time_to_first_token_count", &models),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "gen_ai_server_time_per_output_token_count", &models),
        Some(1.0)
    );
    let per_token = value(&text, "gen_ai_server_time_per_output_token_sum", &models).unwrap();
    assert!((0.005..0.1).contains(&per_token), "{per_token}");
}

#[tokio::test]
async fn fallbacks_name_the_model_that_answered() {
    let (layer, scrape) = recorder();
    let service = layer.layer(service_fn(|request: Request<Body>| async move {
        let telemetry = request.extensions().get::<Telemetry>().unwrap();
        telemetry.set_requested_model("gpt-5.4");
        for _ in 0..3 {
            telemetry.add_attempt();
        }
        telemetry.add_retry();
        telemetry.add_fallback();
        let mut response = Response::new(Body::from("{}"));
        response
            .extensions_mut()
            .insert(ModelInfo::new("gpt-5.4-mini", 128_000, 16_000));
        Ok::<_, Infallible>(response)
    }));
    let response = service.oneshot(chat()).await.unwrap();
    response.into_body().collect().await.unwrap();
    let text = scrape.render();
    let models = [
        ("gen_ai_request_model", "gpt-5.4"),
        ("gen_ai_response_model", "gpt-5.4-mini"),
    ];
    assert_eq!(
        value(&text, "tollgate_upstream_attempts", &models),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "tollgate_upstream_retries", &models),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "tollgate_upstream_fallbacks", &models),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_clients_trace_goes_on_to_the_provider_as_it_came_without_a_recorded_span() {
    let (layer, _scrape) = recorder();
    let service = layer.layer(service_fn(|request: Request<Body>| async move {
        let trace = request.extensions().get::<Telemetry>().unwrap().trace();
        let sent = trace.map(|trace| trace.traceparent().to_str().unwrap().to_owned());
        Ok::<_, Infallible>(Response::new(Body::from(sent.unwrap_or_default())))
    }));
    let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (traceparent, upstream) in [
        (Some(client), client),
        // Nothing to continue, and no span of the gateway's to start a trace with.
        (None, ""),
        (Some("00-not-a-trace"), ""),
    ] {
        let mut request = Request::post("/v1/chat/completions");
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let request = request.body(Body::empty()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let sent = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(sent, upstream, "{traceparent:?}");
    }
}
