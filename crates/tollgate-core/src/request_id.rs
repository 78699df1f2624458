//! Reading the request id that tower-http's request-id layers set.

use http::HeaderMap;
use http::header::HeaderName;

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
