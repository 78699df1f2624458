//! The JSON dialects an error can be rendered in.

use bytes::Bytes;
use http::HeaderValue;
use serde::Serialize;
use tollgate_core::GatewayError;

/// Turns a [`GatewayError`] into a response body. Implement it to speak another gateway's
/// error dialect; [`Canonical`] is the default.
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::{ErrorKind, GatewayError};
/// use tollgate_error::RenderError;
///
/// /// Plain text, for a gateway whose clients are humans with curl.
/// #[derive(Clone)]
/// struct PlainText;
///
/// impl RenderError for PlainText {
///     fn render(&self, error: &GatewayError, request_id: Option<&str>) -> Bytes {
///         format!("{} (request {})\n", error.message, request_id.unwrap_or("-")).into()
///     }
///     fn content_type(&self) -> http::HeaderValue {
///         http::HeaderValue::from_static("text/plain; charset=utf-8")
///     }
/// }
///
/// let error = GatewayError::new(ErrorKind::Forbidden, "No access.");
/// assert_eq!(PlainText.render(&error, Some("r1")), "No access. (request r1)\n");
/// ```
pub trait RenderError: Clone + Send + Sync + 'static {
    /// The body for `error`, with the request id when one is known.
    fn render(&self, error: &GatewayError, request_id: Option<&str>) -> Bytes;

    /// The `content-type` of the body.
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static("application/json")
    }
}

/// tollgate's envelope, a superset that OpenAI SDKs parse:
/// `{"error":{"message","type","param","code","details"?},"request_id"?}`.
///
/// ```
/// use tollgate_core::{ErrorKind, GatewayError};
/// use tollgate_error::{Canonical, RenderError};
///
/// let error = GatewayError::new(ErrorKind::Auth, "Missing key.").code("invalid_api_key");
/// assert_eq!(
///     Canonical.render(&error, Some("r1")),
///     r#"{"error":{"message":"Missing key.","type":"auth_error","param":null,"code":"invalid_api_key"},"request_id":"r1"}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Canonical;

impl RenderError for Canonical {
    fn render(&self, error: &GatewayError, request_id: Option<&str>) -> Bytes {
        error.to_json(request_id)
    }
}

/// The dialect of gateways that put the HTTP status in `error.code`:
/// `{"error":{"code":401,"message":".."},"request_id":".."}`.
///
/// ```
/// use tollgate_core::{ErrorKind, GatewayError};
/// use tollgate_error::{RenderError, StatusCodeDialect};
///
/// let error = GatewayError::new(ErrorKind::Auth, "Unauthorized - Invalid or missing API key");
/// assert_eq!(
///     StatusCodeDialect.render(&error, Some("r1")),
///     r#"{"error":{"code":401,"message":"Unauthorized - Invalid or missing API key"},"request_id":"r1"}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusCodeDialect;

impl RenderError for StatusCodeDialect {
    fn render(&self, error: &GatewayError, request_id: Option<&str>) -> Bytes {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: u16,
            message: &'a str,
        }
        let envelope = Envelope {
            error: Inner {
                code: error.status().as_u16(),
                message: &error.message,
            },
            request_id,
        };
        Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
    }
}
