//! Reading the request id that tower-http's request-id layers set, and refusing a client's
//! that could forge log fields or bloat records.

use http::header::HeaderName;
use http::{HeaderMap, Request};

/// The header tower-http's `SetRequestIdLayer::x_request_id` writes and
/// `PropagateRequestIdLayer` copies to the response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id in `headers`, if it is present and visible ASCII.
///
/// ```
/// use tollgate_core::request_id;
///
/// let mut headers = http::HeaderMap::new();
/// assert_eq!(request_id(&headers), None);
/// headers.insert("x-request-id", "req_42".parse().unwrap());
/// assert_eq!(request_id(&headers), Some("req_42"));
/// ```
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    request_id_in(headers, &X_REQUEST_ID)
}

/// The request id in a header of your choosing.
///
/// ```
/// use http::header::HeaderName;
/// use tollgate_core::request_id::request_id_in;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-correlation-id", "c-1".parse().unwrap());
/// assert_eq!(request_id_in(&headers, &HeaderName::from_static("x-correlation-id")), Some("c-1"));
/// ```
pub fn request_id_in<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty())
}

/// The longest client request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether `id` is a request id worth keeping from a client: 1 to [`MAX_REQUEST_ID_LEN`]
/// characters of `A-Z a-z 0-9 . _ -`, so it can neither forge a log field nor bloat a record.
///
/// ```
/// use tollgate_core::request_id::is_safe_request_id;
///
/// assert!(is_safe_request_id("req_42.retry-1"));
/// assert!(!is_safe_request_id(r#"abc}: key_id="key_admin""#));
/// assert!(!is_safe_request_id(""));
/// assert!(!is_safe_request_id(&"a".repeat(65)));
/// ```
pub fn is_safe_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Removes the client's `x-request-id` unless it is one [safe](is_safe_request_id) value, so
/// that tower-http's `SetRequestIdLayer` (placed inside this) generates one instead. Use it as
/// `ServiceBuilder::map_request(strip_unsafe_request_id)`.
///
/// ```
/// use http::Request;
/// use tollgate_core::request_id::{request_id, strip_unsafe_request_id};
///
/// let forged = Request::get("/").header("x-request-id", "a b=c").body(()).unwrap();
/// assert_eq!(request_id(strip_unsafe_request_id(forged).headers()), None);
/// let kept = Request::get("/").header("x-request-id", "req_1").body(()).unwrap();
/// assert_eq!(request_id(strip_unsafe_request_id(kept).headers()), Some("req_1"));
/// ```
pub fn strip_unsafe_request_id<B>(mut request: Request<B>) -> Request<B> {
    let headers = request.headers_mut();
    let mut ids = headers.get_all(X_REQUEST_ID).iter();
    let safe = match (ids.next(), ids.next()) {
        (None, _) => return request,
        (Some(id), None) => id.to_str().is_ok_and(is_safe_request_id),
        // Two ids: neither can be trusted to be the one the client meant.
        (Some(_), Some(_)) => false,
    };
    if !safe {
        headers.remove(X_REQUEST_ID);
    }
    request
}
