//! What the endpoint tests share: a request to the mock and the events of a stream read back.

// Each test binary uses a part of these.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use tollgate_testkit::{MockUpstream, post_json, send};

/// A `POST` to `path` with `body` as JSON, a provider key, and `x-mock` when given.
pub fn post(path: &'static str, body: &Value, mock: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = post_json(path, body);
    let headers = request.headers_mut();
    headers.insert("host", "mock".parse().unwrap());
    headers.insert("authorization", "Bearer provider-key".parse().unwrap());
    if let Some(mock) = mock {
        headers.insert("x-mock", mock.parse().unwrap());
    }
    request
}

/// The mock's answer to [`post`].
pub async fn call(
    upstream: &MockUpstream,
    path: &'static str,
    body: &Value,
    mock: Option<&str>,
) -> http::Response<Incoming> {
    send(upstream.addr(), post(path, body, mock)).await.unwrap()
}

/// The events of an SSE body: each one's `event:` name (if any) and `data:` text.
pub fn events(body: &str) -> Vec<(Option<&str>, &str)> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let mut name = None;
            let mut data = "";
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value);
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data = value;
                } else {
                    panic!("not an SSE line: {line:?}");
                }
            }
            (name, data)
        })
        .collect()
}

/// The data of each event as JSON.
pub fn json_events(body: &str) -> Vec<Value> {
    events(body)
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}")))
        .collect()
}

/// Reads a body until it fails, returning what arrived and the error's I/O kind.
pub async fn read_until_error(body: Incoming) -> (String, Option<std::io::ErrorKind>) {
    let mut body = body;
    let mut received = Vec::new();
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
            Ok(Some(Ok(frame))) => received.extend_from_slice(&frame.into_data().unwrap()),
            Ok(Some(Err(error))) => break error,
            Ok(None) => panic!(
                "the stream ended cleanly: {}",
                String::from_utf8_lossy(&received)
            ),
            Err(_) => panic!("the stream stalled"),
        }
    };
    let kind = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    (String::from_utf8(received).unwrap(), kind)
}
