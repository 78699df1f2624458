//! Reading the request id that tower-http's request-id layers set, and refusing a client's
//! that could forge log fields or bloat records.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request};

use crate::trace_context::{random_u64, write_hex};

/// The header tower-http's `SetRequestIdLayer::x_request_id` writes and
/// `PropagateRequestIdLayer` copies to the response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A new request id: a UUID v4, hyphenated, drawn from the process's id generator (seeded
/// once by the operating system), so without the system call per id that
/// `uuid::Uuid::new_v4` makes. Unique within the process and spread across replicas; not a
/// secret.
///
/// ```
/// use tollgate_core::request_id::new_request_id;
///
/// let id = new_request_id();
/// let text = id.to_str().unwrap();
/// assert_eq!(text.len(), 36);
/// assert_eq!(text.as_bytes()[14], b'4');
/// assert_ne!(new_request_id(), id);
/// ```
pub fn new_request_id() -> HeaderValue {
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&random_u64().to_be_bytes());
    uuid[8..].copy_from_slice(&random_u64().to_be_bytes());
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // the RFC 9562 variant
    let mut text = *b"00000000-0000-0000-0000-000000000000";
    write_hex(&mut text[0..8], &uuid[0..4]);
    write_hex(&mut text[9..13], &uuid[4..6]);
    write_hex(&mut text[14..18], &uuid[6..8]);
    write_hex(&mut text[19..23], &uuid[8..10]);
    write_hex(&mut text[24..36], &uuid[10..16]);
    // Only hex digits and dashes: always a valid header value. Shared from the start: the
    // response and the upstream request carry copies.
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).unwrap_or(HeaderValue::from_static(""))
}

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
