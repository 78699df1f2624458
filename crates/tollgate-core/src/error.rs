//! Every error a tollgate stack can return, and its one JSON rendering.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::{Map, Value};

/// The `x-should-retry` response header that OpenAI SDKs read before their own retry rules.
pub const X_SHOULD_RETRY: http::HeaderName = http::HeaderName::from_static("x-should-retry");

/// What went wrong, at the granularity clients branch on: an HTTP status and a `type` string.
///
/// ```
/// use tollgate_core::ErrorKind;
///
/// assert_eq!(ErrorKind::ModelRetired.status().as_u16(), 410);
/// assert_eq!(ErrorKind::ModelRetired.type_str(), "model_retired");
/// assert!(ErrorKind::RateLimitExceeded.is_retryable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400: the request is malformed or a field is out of range.
    InvalidRequest,
    /// 400: the model exists but does not support the endpoint it was sent to.
    UnsupportedOperation,
    /// 401: the API key is missing, malformed, unknown, revoked or expired.
    Auth,
    /// 402: the prepaid balance does not cover the request.
    InsufficientBalance,
    /// 403: the caller may not use what it asked for.
    Forbidden,
    /// 404: the model is unknown.
    ModelNotFound,
    /// 404: no endpoint of the gateway answers this path.
    UnknownRoute,
    /// 404: what the request names (an API key, an account) does not exist.
    NotFound,
    /// 405: the path exists, but not for this method (the `Allow` header lists those it takes).
    MethodNotAllowed,
    /// 408: the client sent its request too slowly.
    RequestTimeout,
    /// 410: the model was retired.
    ModelRetired,
    /// 413: the request body or the prompt is too large.
    RequestTooLarge,
    /// 429: a rate limit was hit.
    RateLimitExceeded,
    /// 500: the gateway itself failed.
    Internal,
    /// 502: the upstream provider answered with an error.
    ProviderError,
    /// 503: the upstream provider could not be reached.
    ProviderUnavailable,
    /// 503: a dependency of the gateway itself (such as Redis) is down.
    ServiceUnavailable,
    /// 504: the upstream provider did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// Every kind, in status order.
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::InvalidRequest,
        ErrorKind::UnsupportedOperation,
        ErrorKind::Auth,
        ErrorKind::InsufficientBalance,
        ErrorKind::Forbidden,
        ErrorKind::ModelNotFound,
        ErrorKind::UnknownRoute,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::RequestTimeout,
        ErrorKind::ModelRetired,
        ErrorKind::RequestTooLarge,
        ErrorKind::RateLimitExceeded,
        ErrorKind::Internal,
        ErrorKind::ProviderError,
        ErrorKind::ProviderUnavailable,
        ErrorKind::ServiceUnavailable,
        ErrorKind::Timeout,
    ];

    /// The HTTP status this kind is answered with.
    ///
    /// ```
    /// # use tollgate_core::ErrorKind;
    /// assert_eq!(ErrorKind::InsufficientBalance.status(), http::StatusCode::PAYMENT_REQUIRED);
    /// ```
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::UnsupportedOperation => StatusCode::BAD_REQUEST,
            ErrorKind::Auth => StatusCode::UNAUTHORIZED,
            ErrorKind::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::ModelNotFound | ErrorKind::UnknownRoute | ErrorKind::NotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::ModelRetired => StatusCode::GONE,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::ProviderError => StatusCode::BAD_GATEWAY,
            ErrorKind::ProviderUnavailable | ErrorKind::ServiceUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `error.type` string of the envelope.
    ///
    /// ```
    /// # use tollgate_core::ErrorKind;
    /// assert_eq!(ErrorKind::Auth.type_str(), "auth_error");
    /// ```
    pub const fn type_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::UnsupportedOperation => "unsupported_operation",
            ErrorKind::Auth => "auth_error",
            ErrorKind::InsufficientBalance => "insufficient_balance",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::UnknownRoute => "unknown_route",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::ModelRetired => "model_retired",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimitExceeded => "rate_limit_exceeded",
            ErrorKind::Internal => "internal_error",
            ErrorKind::ProviderError => "provider_error",
            ErrorKind::ProviderUnavailable => "provider_unavailable",
            ErrorKind::ServiceUnavailable => "service_unavailable",
            ErrorKind::Timeout => "timeout",
        }
    }

    /// Whether the same request may succeed if sent again later: 429, 500, 502, 503 and 504.
    ///
    /// ```
    /// # use tollgate_core::ErrorKind;
    /// assert!(ErrorKind::Timeout.is_retryable());
    /// assert!(!ErrorKind::InvalidRequest.is_retryable());
    /// ```
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimitExceeded
                | ErrorKind::Internal
                | ErrorKind::ProviderError
                | ErrorKind::ProviderUnavailable
                | ErrorKind::ServiceUnavailable
                | ErrorKind::Timeout
        )
    }

    /// The kind a bare error status maps to, for responses that carry no [`GatewayError`].
    ///
    /// ```
    /// # use tollgate_core::ErrorKind;
    /// assert_eq!(ErrorKind::from_status(http::StatusCode::GATEWAY_TIMEOUT), ErrorKind::Timeout);
    /// assert_eq!(ErrorKind::from_status(http::StatusCode::IM_A_TEAPOT), ErrorKind::InvalidRequest);
    /// ```
    pub fn from_status(status: StatusCode) -> ErrorKind {
        match status.as_u16() {
            401 => ErrorKind::Auth,
            402 => ErrorKind::InsufficientBalance,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::UnknownRoute,
            405 => ErrorKind::MethodNotAllowed,
            408 => ErrorKind::RequestTimeout,
            410 => ErrorKind::ModelRetired,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimitExceeded,
            502 => ErrorKind::ProviderError,
            503 => ErrorKind::ServiceUnavailable,
            504 => ErrorKind::Timeout,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Internal,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_str())
    }
}

/// An error answered to the client, rendered as the canonical envelope
/// `{"error":{"message","type","param","code","details"?},"request_id"?}`.
///
/// Layers build one and return [`GatewayError::into_response`]; they never write error JSON by hand.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{ErrorKind, GatewayError};
///
/// let error = GatewayError::new(ErrorKind::RateLimitExceeded, "Slow down.")
///     .code("rate_limit_exceeded")
///     .detail("limit", 60)
///     .retry_after(Duration::from_millis(1200));
/// let response = error.into_response();
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert!(response.extensions().get::<GatewayError>().is_some());
/// ```
///
/// The fields are public to read; build one with [`GatewayError::new`] and the consuming setters.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GatewayError {
    /// What went wrong; decides the status and `error.type`.
    pub kind: ErrorKind,
    /// The message shown to the client: what happened and what to do about it.
    pub message: Cow<'static, str>,
    /// The request field at fault (`error.param`).
    pub param: Option<Cow<'static, str>>,
    /// The fine reason OpenAI clients know (`error.code`), such as `invalid_api_key`.
    pub code: Option<Cow<'static, str>>,
    /// The optional, backward-compatible `error.details` object; omitted when empty.
    pub details: Map<String, Value>,
    /// When the client may try again (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Overrides the kind's retryability in `x-should-retry`.
    pub should_retry: Option<bool>,
}

impl GatewayError {
    /// An error of `kind` with a message that tells the client what to fix.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            details: Map::new(),
            retry_after: None,
            should_retry: None,
        }
    }

    /// The 503 answered when the state a layer decides on (keys, limits, balances) cannot be
    /// read: retryable, with `Retry-After: 1`, since a store that failed over or reconnected
    /// answers again within a second.
    ///
    /// ```
    /// use std::time::Duration;
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let error = GatewayError::state_unavailable("Balances could not be checked right now.");
    /// assert_eq!(error.kind, ErrorKind::ServiceUnavailable);
    /// assert_eq!(error.retry_after, Some(Duration::from_secs(1)));
    /// assert_eq!(error.into_response().headers()["retry-after"], "1");
    /// ```
    pub fn state_unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        GatewayError::new(ErrorKind::ServiceUnavailable, message)
            .retry_after(Duration::from_secs(1))
    }

    /// The 500 answered when the gateway itself failed; the cause belongs in the log, not here.
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// assert_eq!(GatewayError::internal().kind, ErrorKind::Internal);
    /// ```
    pub fn internal() -> Self {
        GatewayError::new(
            ErrorKind::Internal,
            "The gateway had an error while processing your request. Retry after a short delay.",
        )
    }

    /// The 404 for a path no endpoint answers, naming the method and path (never a model).
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let error = GatewayError::unknown_route(&http::Method::POST, "/v1/batches");
    /// assert_eq!(error.kind, ErrorKind::UnknownRoute);
    /// assert_eq!(error.into_response().status(), 404);
    /// ```
    pub fn unknown_route(method: &Method, path: &str) -> Self {
        GatewayError::new(
            ErrorKind::UnknownRoute,
            format!("This gateway does not serve {method} {path}. Check the URL and the API's base path."),
        )
        .code("unknown_url")
    }

    /// The 405 for a known path asked with another method; `Allow` lists `allowed`.
    ///
    /// ```
    /// # use tollgate_core::GatewayError;
    /// use http::Method;
    ///
    /// let response = GatewayError::method_not_allowed(&Method::PUT, "/v1/chat/completions", &[Method::POST])
    ///     .into_response();
    /// assert_eq!(response.status(), 405);
    /// assert_eq!(response.headers()["allow"], "POST");
    /// ```
    pub fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> Self {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        GatewayError::new(
            ErrorKind::MethodNotAllowed,
            format!("{path} does not take {method}; use {}.", names.join(" or ")),
        )
        .code("method_not_allowed")
        .detail(ALLOWED_METHODS, names)
    }

    /// Names the request field at fault (`error.param`).
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let error = GatewayError::new(ErrorKind::InvalidRequest, "bad").param("temperature");
    /// assert_eq!(error.param.as_deref(), Some("temperature"));
    /// ```
    pub fn param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the fine reason OpenAI clients know (`error.code`), such as `invalid_api_key`.
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let error = GatewayError::new(ErrorKind::Auth, "bad key").code("invalid_api_key");
    /// assert_eq!(error.code.as_deref(), Some("invalid_api_key"));
    /// ```
    pub fn code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Adds one entry to `error.details`, the optional, backward-compatible object.
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let error = GatewayError::new(ErrorKind::ModelRetired, "gone")
    ///     .detail("replacement_model", "b");
    /// assert_eq!(error.details["replacement_model"], "b");
    /// ```
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// Replaces `error.details` as a whole.
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let mut details = serde_json::Map::new();
    /// details.insert("hint".into(), "use /v1/embeddings".into());
    /// let error = GatewayError::new(ErrorKind::UnsupportedOperation, "wrong endpoint").details(details);
    /// assert_eq!(error.details.len(), 1);
    /// ```
    pub fn details(mut self, details: Map<String, Value>) -> Self {
        self.details = details;
        self
    }

    /// Tells the client when to try again: a `Retry-After` header in whole seconds, rounded up, at least 1.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let response = GatewayError::new(ErrorKind::RateLimitExceeded, "wait")
    ///     .retry_after(Duration::ZERO)
    ///     .into_response();
    /// assert_eq!(response.headers()["retry-after"], "1");
    /// ```
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Overrides whether clients should retry (`x-should-retry`); by default the kind decides.
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let error = GatewayError::new(ErrorKind::RateLimitExceeded, "can never fit").should_retry(false);
    /// assert!(!error.is_retryable());
    /// assert_eq!(error.into_response().headers()["x-should-retry"], "false");
    /// ```
    pub fn should_retry(mut self, retry: bool) -> Self {
        self.should_retry = Some(retry);
        self
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Whether a client should send the same request again.
    pub fn is_retryable(&self) -> bool {
        self.should_retry.unwrap_or(self.kind.is_retryable())
    }

    /// The canonical JSON envelope, with `request_id` when one is known.
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let body = GatewayError::new(ErrorKind::Forbidden, "No access.").to_json(Some("req-1"));
    /// assert_eq!(
    ///     body,
    ///     r#"{"error":{"message":"No access.","type":"forbidden","param":null,"code":null},"request_id":"req-1"}"#
    /// );
    /// ```
    pub fn to_json(&self, request_id: Option<&str>) -> Bytes {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Body<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'static str,
            param: Option<&'a str>,
            code: Option<&'a str>,
            #[serde(skip_serializing_if = "Map::is_empty")]
            details: &'a Map<String, Value>,
        }
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind.type_str(),
                param: self.param.as_deref(),
                code: self.code.as_deref(),
                details: &self.details,
            },
            request_id,
        };
        // Serializing borrowed strings and a JSON map into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
    }

    /// The data of the Responses API's `error` stream event,
    /// `{"type":"error","code","message","param","sequence_number"}`: how an error reaches a
    /// Responses API client once its stream has begun. `code` is the error's code, else its
    /// type, so that the client still has a reason to branch on.
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let data = GatewayError::new(ErrorKind::ProviderError, "Cut short.").to_responses_event(7);
    /// assert_eq!(
    ///     data,
    ///     r#"{"type":"error","code":"provider_error","message":"Cut short.","param":null,"sequence_number":7}"#
    /// );
    /// ```
    pub fn to_responses_event(&self, sequence_number: u64) -> Bytes {
        #[derive(Serialize)]
        struct Event<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            code: &'a str,
            message: &'a str,
            param: Option<&'a str>,
            sequence_number: u64,
        }
        let event = Event {
            kind: "error",
            code: self.code.as_deref().unwrap_or(self.kind.type_str()),
            message: &self.message,
            param: self.param.as_deref(),
            sequence_number,
        };
        // Serializing borrowed strings and a number into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&event).unwrap_or_default())
    }

    /// The response headers every rendering of this error carries: `retry-after`,
    /// `x-should-retry`, and on a 401 `WWW-Authenticate: Bearer` (RFC 9110 requires it).
    ///
    /// ```
    /// # use tollgate_core::{ErrorKind, GatewayError};
    /// let mut headers = http::HeaderMap::new();
    /// GatewayError::new(ErrorKind::Timeout, "slow").apply_headers(&mut headers);
    /// assert_eq!(headers["x-should-retry"], "true");
    /// GatewayError::new(ErrorKind::Auth, "no key").apply_headers(&mut headers);
    /// assert_eq!(headers["www-authenticate"], "Bearer");
    /// ```
    pub fn apply_headers(&self, headers: &mut http::HeaderMap) {
        if self.kind == ErrorKind::Auth {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(Value::Array(methods)) = self.details.get(ALLOWED_METHODS) {
            let methods: Vec<&str> = methods.iter().filter_map(Value::as_str).collect();
            if let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) {
                headers.insert(ALLOW, allow);
            }
        }
        if let Some(after) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
        }
        headers.insert(
            X_SHOULD_RETRY,
            HeaderValue::from_static(if self.is_retryable() { "true" } else { "false" }),
        );
    }

    /// The response: status, `content-type: application/json`, `retry-after` where set,
    /// `x-should-retry`, the canonical body, and the error itself in the extensions so that
    /// an outer `ErrorEnvelopeLayer` can re-render it with the request id.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.to_json(None)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.apply_headers(headers);
        response.extensions_mut().insert(self);
        response
    }
}

/// The `error.details` member listing the methods a path takes; the `Allow` header repeats it.
pub const ALLOWED_METHODS: &str = "allowed_methods";

/// Whole seconds, rounded up, never 0: a client told `Retry-After: 0` retries at once.
///
/// ```
/// # use std::time::Duration;
/// use tollgate_core::error::retry_after_secs;
/// assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
/// assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
/// assert_eq!(retry_after_secs(Duration::from_millis(20_001)), 21);
/// ```
pub fn retry_after_secs(after: Duration) -> u64 {
    ceil_secs(after).max(1)
}

/// Whole seconds, rounded up (a reset 0.2 s away is 1 s away; zero stays zero).
///
/// ```
/// # use std::time::Duration;
/// use tollgate_core::error::ceil_secs;
/// assert_eq!(ceil_secs(Duration::ZERO), 0);
/// assert_eq!(ceil_secs(Duration::from_millis(200)), 1);
/// assert_eq!(ceil_secs(Duration::from_secs(60)), 60);
/// ```
pub fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// An error and its sources, outermost first: where a layer looks for the cause it knows
/// (a timeout, an I/O error) under the wrappers of clients and middleware.
///
/// ```
/// use std::error::Error;
/// use std::io;
/// use tollgate_core::error::source_chain;
///
/// #[derive(Debug)]
/// struct Connect(io::Error);
/// impl std::fmt::Display for Connect {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("connect failed")
///     }
/// }
/// impl Error for Connect {
///     fn source(&self) -> Option<&(dyn Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let error = Connect(io::Error::new(io::ErrorKind::TimedOut, "slow"));
/// let timed_out = source_chain(&error)
///     .filter_map(|cause| cause.downcast_ref::<io::Error>())
///     .any(|io| io.kind() == io::ErrorKind::TimedOut);
/// assert!(timed_out);
/// ```
pub fn source_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |current| current.source())
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind,
            self.status().as_u16(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}
