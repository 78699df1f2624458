//! Upstream failures as the gateway's error envelopes.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use tollgate_core::{ErrorKind, GatewayError};

/// What an OpenAI-style error body says.
#[derive(Default, Deserialize)]
struct UpstreamError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn parse(body: &Bytes) -> UpstreamError {
    #[derive(Deserialize)]
    struct Wrapped {
        error: UpstreamError,
    }
    serde_json::from_slice::<Wrapped>(body)
        .map(|wrapped| wrapped.error)
        .unwrap_or_default()
}

/// An upstream error response, normalized: 429 stays 429 (with its `Retry-After`), 5xx
/// becomes 502 `provider_error`, a 4xx keeps its meaning with the upstream's message, param
/// and code, except 401/403 (the gateway's provider key was refused: not the client's fault).
pub(crate) fn from_response(
    status: StatusCode,
    body: &Bytes,
    retry_after: Option<Duration>,
) -> GatewayError {
    let upstream = parse(body);
    let message = upstream
        .message
        .clone()
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let code = upstream.code.as_ref().and_then(|code| match code {
        serde_json::Value::String(code) => Some(code.clone()),
        _ => None,
    });
    let error = match status.as_u16() {
        429 => {
            let error = GatewayError::new(
                ErrorKind::RateLimitExceeded,
                format!("The upstream provider is rate limiting requests: {message}"),
            )
            .code("rate_limit_exceeded");
            match retry_after {
                Some(after) => error.retry_after(after),
                None => error,
            }
        }
        401 | 403 => GatewayError::new(
            ErrorKind::ProviderError,
            "The upstream provider refused the gateway's credentials. This is not a problem with your request; retry later.",
        ),
        500..=599 => GatewayError::new(
            ErrorKind::ProviderError,
            format!("The upstream provider failed: {message}"),
        ),
        404 => GatewayError::new(ErrorKind::ModelNotFound, message),
        408 => GatewayError::new(ErrorKind::RequestTimeout, message),
        413 => GatewayError::new(ErrorKind::RequestTooLarge, message),
        _ => GatewayError::new(ErrorKind::InvalidRequest, message),
    };
    let error = match (
        upstream.param,
        status.is_server_error() || matches!(status.as_u16(), 401 | 403),
    ) {
        (Some(param), false) => error.param(param),
        _ => error,
    };
    let error = match (code, error.code.is_some()) {
        (Some(code), false)
            if status.is_client_error() && !matches!(status.as_u16(), 401 | 403) =>
        {
            error.code(code)
        }
        _ => error,
    };
    error
        .detail("upstream_status", status.as_u16())
        .detail("upstream_message", upstream.message.unwrap_or_default())
}

pub(crate) fn unreachable() -> GatewayError {
    GatewayError::new(
        ErrorKind::ProviderUnavailable,
        "The upstream provider could not be reached. Retry later.",
    )
}

pub(crate) fn closed() -> GatewayError {
    GatewayError::new(
        ErrorKind::ProviderError,
        "The upstream provider closed the connection before it answered. Retry later.",
    )
}

pub(crate) fn timed_out(which: &str, after: Duration) -> GatewayError {
    GatewayError::new(
        ErrorKind::Timeout,
        format!(
            "The upstream provider did not answer in time ({which} timeout of {}s). Request fewer tokens or try streaming.",
            after.as_secs_f64()
        ),
    )
}
