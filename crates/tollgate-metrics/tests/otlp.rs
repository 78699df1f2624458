//! The OTLP exporters send the metrics and the request span over HTTP to a collector, and the
//! request span continues the client's trace: its parent is the client's span, and the span id
//! sent upstream is the exported span's.
#![cfg(feature = "otlp")]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate_core::{Body, Telemetry};
use tollgate_metrics::buckets::DURATION_BUCKETS;
use tollgate_metrics::otlp::{self, OtlpConfig};
use tollgate_metrics::{MetricsLayer, names};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A POST a collector received: its path and body.
type Post = (String, Vec<u8>);

/// The POSTs a collector received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Post>>>);

impl Received {
    fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        let received = self.0.lock().unwrap();
        let bodies = received.iter().filter(|(at, _)| at == path);
        bodies.map(|(_, body)| body.clone()).collect()
    }
}

/// A collector on 127.0.0.1 answering every request with an empty 200 (an empty protobuf
/// response is a valid one).
fn collector() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let received = Received::default();
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let store = store.clone();
            std::thread::spawn(move || serve(stream, &store));
        }
    });
    (address, received)
}

/// HTTP/1.1 requests with a `content-length`, kept alive until the client closes.
fn serve(stream: TcpStream, received: &Received) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if method == "POST" {
            received.0.lock().unwrap().push((path, body));
        }
        let response =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        writer.write_all(response.as_bytes()).unwrap();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn hex(digits: &str) -> Vec<u8> {
    (0..digits.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&digits[at..at + 2], 16).unwrap())
        .collect()
}

/// One request through the metrics layer inside a `request` span made like tollgate's
/// `RequestSpan`, exported to a new collector; returns what the collector received and the
/// `traceparent` the inner service would have sent upstream.
fn export_one_request(traceparent: Option<&str>) -> (Received, String) {
    let (address, received) = collector();
    let config = OtlpConfig::new()
        .endpoint(format!("http://{address}/"))
        .service_name("tollgate-test")
        .export_interval(Duration::from_secs(3600))
        .timeout(Duration::from_secs(10));
    let (recorder, meters) = otlp::metrics_recorder(&config).unwrap();
    let tracers = otlp::tracer_provider(&config).unwrap();
    let subscriber = tracing_subscriber::registry().with(otlp::span_layer(&tracers));

    let upstream = Arc::new(Mutex::new(String::new()));
    let seen = upstream.clone();
    let mut service = MetricsLayer::new()
        .recorder(recorder)
        .layer(tower::service_fn(move |request: Request<Body>| {
            let trace = request.extensions().get::<Telemetry>().unwrap().trace();
            let traceparent = trace.unwrap().traceparent();
            *seen.lock().unwrap() = traceparent.to_str().unwrap().to_owned();
            async { Ok::<_, Infallible>(Response::new(Body::from("{}"))) }
        }));
    let mut request = Request::post("/v1/embeddings");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let request = request.body(Body::empty()).unwrap();

    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!(
            "request",
            method = "POST",
            path = "/v1/embeddings",
            request_id = "-",
            key_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            endpoint = tracing::field::Empty,
        );
        tokio_test::block_on(async {
            service.ready().await.unwrap();
            // As tower-http's trace layer does: the call, then the response, in the span.
            let response = span.in_scope(|| service.call(request));
            let response = response.instrument(span.clone()).await.unwrap();
            response.into_body().collect().await.unwrap();
        });
    });
    tracers.force_flush().unwrap();
    meters.force_flush().unwrap();
    tracers.shutdown().unwrap();
    meters.shutdown().unwrap();
    let upstream = upstream.lock().unwrap().clone();
    (received, upstream)
}

#[test]
fn metrics_and_the_request_span_reach_the_collector_in_the_clients_trace() {
    let (received, upstream) = export_one_request(Some(CLIENT_TRACEPARENT));

    let metrics = received.bodies("/v1/metrics");
    assert!(!metrics.is_empty(), "no POST to /v1/metrics");
    let duration = names::REQUEST_DURATION.as_bytes();
    assert!(metrics.iter().any(|body| contains(body, duration)));
    // The histogram's boundaries, packed doubles.
    let bounds: Vec<u8> = DURATION_BUCKETS
        .iter()
        .flat_map(|bound| bound.to_le_bytes())
        .collect();
    assert!(metrics.iter().any(|body| contains(body, &bounds)));

    let traces = received.bodies("/v1/traces");
    assert!(!traces.is_empty(), "no POST to /v1/traces");
    let client_trace_id = hex(&CLIENT_TRACEPARENT[3..35]);
    let client_span_id = hex(&CLIENT_TRACEPARENT[36..52]);
    // The client's trace, the client's span as the parent.
    assert!(traces.iter().any(|body| contains(body, &client_trace_id)));
    assert!(traces.iter().any(|body| contains(body, &client_span_id)));

    // Upstream: the client's trace, the exported span as the parent.
    assert_eq!(&upstream[..36], &CLIENT_TRACEPARENT[..36]);
    assert!(upstream.ends_with("-01"));
    let gateway_span_id = hex(&upstream[36..52]);
    assert_ne!(gateway_span_id, client_span_id);
    assert!(
        traces.iter().any(|body| contains(body, &gateway_span_id)),
        "the span id sent upstream is not the exported span's"
    );
}

#[test]
fn without_a_client_traceparent_the_request_span_starts_the_trace_sent_upstream() {
    let (received, upstream) = export_one_request(None);

    let traces = received.bodies("/v1/traces");
    assert!(!traces.is_empty(), "no POST to /v1/traces");
    let trace_id = hex(&upstream[3..35]);
    let span_id = hex(&upstream[36..52]);
    assert!(traces.iter().any(|body| contains(body, &trace_id)));
    assert!(traces.iter().any(|body| contains(body, &span_id)));
}
