//! Small helpers that test code around a gateway keeps needing: a request to send, and a
//! response body read back as text or JSON.

use std::fmt::Debug;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;

/// A `POST /v1/chat/completions` with `body` as its JSON.
///
/// ```
/// use http_body_util::Full;
/// use bytes::Bytes;
///
/// let request: http::Request<Full<Bytes>> =
///     tollgate_testkit::chat_request(&serde_json::json!({"model": "m", "messages": []}));
/// assert_eq!(request.uri(), "/v1/chat/completions");
/// assert_eq!(request.headers()["content-type"], "application/json");
/// ```
pub fn chat_request<B: From<Bytes>>(body: &Value) -> Request<B> {
    post_json("/v1/chat/completions", body)
}

/// A `POST` to `path` (such as `/v1/responses`) with `body` as its JSON.
///
/// ```
/// use http_body_util::Full;
/// use bytes::Bytes;
///
/// let body = serde_json::json!({"model": "m", "input": "Hi"});
/// let request: http::Request<Full<Bytes>> = tollgate_testkit::post_json("/v1/responses", &body);
/// assert_eq!(request.method(), "POST");
/// assert_eq!(request.uri(), "/v1/responses");
/// assert_eq!(request.headers()["content-type"], "application/json");
/// ```
pub fn post_json<B: From<Bytes>>(path: &'static str, body: &Value) -> Request<B> {
    let mut request = Request::new(B::from(Bytes::from(body.to_string())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(path);
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    request
}

/// The whole response body as text; panics (in a test) when the body fails or is not UTF-8.
///
/// ```
/// # tokio_test::block_on(async {
/// let response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi")));
/// assert_eq!(tollgate_testkit::body_text(response).await, "hi");
/// # });
/// ```
pub async fn body_text<B>(response: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: Debug,
{
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the response body arrives whole")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("the response body is UTF-8")
}

/// The whole response body as JSON; panics (in a test) when it is not JSON.
///
/// ```
/// # tokio_test::block_on(async {
/// let response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(r#"{"a":1}"#)));
/// assert_eq!(tollgate_testkit::body_json(response).await["a"], 1);
/// # });
/// ```
pub async fn body_json<B>(response: Response<B>) -> Value
where
    B: http_body::Body,
    B::Error: Debug,
{
    let text = body_text(response).await;
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}
