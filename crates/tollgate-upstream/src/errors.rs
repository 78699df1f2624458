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
/// and code, except 401/403 (the gateway's provider key was refused: not the client's fault)
/// and a 404 that is not about the model (the provider lacks `path`, the path it was sent to).
/// A 404 about the model is `model_not_found` whichever provider's code says so (see
/// [`is_model_not_found`]).
pub(crate) fn from_response(
    status: StatusCode,
    body: &Bytes,
    retry_after: Option<Duration>,
    path: &str,
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
        404 if code.as_deref().is_some_and(is_model_not_found) => {
            GatewayError::new(ErrorKind::ModelNotFound, message).code("model_not_found")
        }
        // The provider has no such endpoint: the same request meets the same answer.
        404 => GatewayError::new(
            ErrorKind::ProviderError,
            format!("The upstream provider answered 404 Not Found for {path}: {message}"),
        )
        .detail("upstream_path", path)
        .should_retry(false),
        408 => GatewayError::new(ErrorKind::RequestTimeout, message),
        413 => GatewayError::new(ErrorKind::RequestTooLarge, message),
        _ => GatewayError::new(ErrorKind::InvalidRequest, message),
    };
    // The upstream's param and code describe the client's request, unless the fault is the
    // provider's.
    let error = match upstream.param {
        Some(param) if error.kind != ErrorKind::ProviderError => error.param(param),
        _ => error,
    };
    let error = match code {
        Some(code) if error.kind != ErrorKind::ProviderError && error.code.is_none() => {
            error.code(code)
        }
        _ => error,
    };
    let error = error.detail("upstream_status", status.as_u16());
    match status.as_u16() {
        // A refusal of the gateway's credentials may quote them (OpenAI's names the key it was
        // given): the operator's log gets it, the client does not.
        401 | 403 => {
            tracing::warn!(status = status.as_u16(), upstream_message = ?upstream.message, "the upstream provider refused the gateway's credentials");
            error
        }
        _ => error.detail("upstream_message", upstream.message.unwrap_or_default()),
    }
}

/// Whether an upstream 404's `error.code` says the model is unknown: OpenAI's
/// `model_not_found`, or Azure OpenAI's `DeploymentNotFound` (a deployment is how Azure serves a
/// model, and the request's `model` names it).
fn is_model_not_found(code: &str) -> bool {
    matches!(code, "model_not_found" | "DeploymentNotFound")
}

/// An upstream answer that is neither a success nor an error: a 1xx, a 3xx or a 2xx other
/// than 200 and 201 (see `exchange::is_answer`), answered as a 502 so nothing bills it.
pub(crate) fn unexpected_status(status: StatusCode, path: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::ProviderError,
        format!(
            "The upstream provider answered {status} for {path}, which an OpenAI-compatible API never answers; the request was not completed."
        ),
    )
    .detail("upstream_status", status.as_u16())
    .detail("upstream_path", path)
    // Sending the same request again meets the same answer.
    .should_retry(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(body: &'static str) -> GatewayError {
        from_response(
            StatusCode::NOT_FOUND,
            &Bytes::from_static(body.as_bytes()),
            None,
            "/v1/chat/completions",
        )
    }

    #[test]
    fn a_404_about_the_model_is_model_not_found_from_openai_or_azure() {
        let openai = not_found(
            r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
        );
        let azure = not_found(
            r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#,
        );
        for error in [&openai, &azure] {
            assert_eq!(error.kind, ErrorKind::ModelNotFound);
            assert_eq!(error.code.as_deref(), Some("model_not_found"));
            assert_eq!(error.details["upstream_status"], 404);
        }
        assert!(
            azure
                .message
                .starts_with("The API deployment for this resource")
        );
        // Any other 404 is the provider lacking the path.
        let other = not_found(r#"{"error":{"code":"NotFound","message":"Resource not found"}}"#);
        assert_eq!(other.kind, ErrorKind::ProviderError);
        assert_eq!(other.code, None);
    }
}
