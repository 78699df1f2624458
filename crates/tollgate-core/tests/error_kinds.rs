//! Every `ErrorKind`: status, type, retryability and the exact envelope (golden strings).

use std::time::Duration;

use http_body_util::BodyExt;
use tollgate_core::{ErrorKind, GatewayError};

#[test]
fn every_kind_has_its_status_type_retryability_and_golden_json() {
    let table: [(ErrorKind, u16, &str, bool); 18] = [
        (
            ErrorKind::InvalidRequest,
            400,
            "invalid_request_error",
            false,
        ),
        (
            ErrorKind::UnsupportedOperation,
            400,
            "unsupported_operation",
            false,
        ),
        (ErrorKind::Auth, 401, "auth_error", false),
        (
            ErrorKind::InsufficientBalance,
            402,
            "insufficient_balance",
            false,
        ),
        (ErrorKind::Forbidden, 403, "forbidden", false),
        (ErrorKind::ModelNotFound, 404, "model_not_found", false),
        (ErrorKind::UnknownRoute, 404, "unknown_route", false),
        (ErrorKind::NotFound, 404, "not_found", false),
        (
            ErrorKind::MethodNotAllowed,
            405,
            "method_not_allowed",
            false,
        ),
        (ErrorKind::RequestTimeout, 408, "request_timeout", false),
        (ErrorKind::ModelRetired, 410, "model_retired", false),
        (ErrorKind::RequestTooLarge, 413, "request_too_large", false),
        (
            ErrorKind::RateLimitExceeded,
            429,
            "rate_limit_exceeded",
            true,
        ),
        (ErrorKind::Internal, 500, "internal_error", true),
        (ErrorKind::ProviderError, 502, "provider_error", true),
        (
            ErrorKind::ProviderUnavailable,
            503,
            "provider_unavailable",
            true,
        ),
        (
            ErrorKind::ServiceUnavailable,
            503,
            "service_unavailable",
            true,
        ),
        (ErrorKind::Timeout, 504, "timeout", true),
    ];
    assert_eq!(table.len(), ErrorKind::ALL.len());
    for ((kind, status, type_str, retryable), listed) in table.into_iter().zip(ErrorKind::ALL) {
        assert_eq!(kind, listed, "ALL is in status order");
        assert_eq!(kind.status().as_u16(), status, "{kind:?}");
        assert_eq!(kind.type_str(), type_str, "{kind:?}");
        assert_eq!(kind.is_retryable(), retryable, "{kind:?}");
        let golden = format!(
            r#"{{"error":{{"message":"Something about {type_str}.","type":"{type_str}","param":null,"code":null}}}}"#
        );
        let error = GatewayError::new(kind, format!("Something about {type_str}."));
        assert_eq!(error.to_json(None), golden, "{kind:?}");
    }
}

#[test]
fn full_envelope_with_param_code_details_and_request_id() {
    let error = GatewayError::new(
        ErrorKind::ModelRetired,
        r#"Model "a" was retired on 2026-06-30. Use "b" instead."#,
    )
    .param("model")
    .code("model_retired")
    .detail("model", "a")
    .detail("replacement_model", "b")
    .detail("retirement_date", "2026-06-30");
    assert_eq!(
        error.to_json(Some("req_123")),
        concat!(
            r#"{"error":{"message":"Model \"a\" was retired on 2026-06-30. Use \"b\" instead.","#,
            r#""type":"model_retired","param":"model","code":"model_retired","#,
            r#""details":{"model":"a","replacement_model":"b","retirement_date":"2026-06-30"}},"#,
            r#""request_id":"req_123"}"#
        )
    );
}

#[tokio::test]
async fn into_response_sets_status_headers_body_and_extension() {
    let error = GatewayError::new(ErrorKind::RateLimitExceeded, "Slow down.")
        .code("rate_limit_exceeded")
        .retry_after(Duration::from_millis(19_001));
    let response = error.clone().into_response();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["retry-after"], "20");
    assert_eq!(response.headers()["x-should-retry"], "true");
    assert_eq!(response.extensions().get::<GatewayError>(), Some(&error));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        r#"{"error":{"message":"Slow down.","type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}"#
    );
}

#[test]
fn responses_without_retry_after_have_no_header() {
    let response = GatewayError::new(ErrorKind::Auth, "Missing key.").into_response();
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(response.headers()["x-should-retry"], "false");
}

#[test]
fn display_names_kind_status_and_message() {
    let error = GatewayError::new(ErrorKind::Timeout, "The provider did not answer in 30s.");
    assert_eq!(
        error.to_string(),
        "timeout (504): The provider did not answer in 30s."
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
    assert!(boxed.downcast_ref::<GatewayError>().is_some());
}
