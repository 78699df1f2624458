//! One HTTP exchange with the upstream, and what its failures mean.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;
use tollgate_core::error::source_chain;
use tollgate_core::{GatewayError, ResponseBody};

use crate::body::UpstreamBody;
use crate::errors;
use crate::service::Shared;

/// Why one exchange did not produce a response to pass on.
pub(crate) enum Failure {
    /// Worth retrying: a retryable status (with its error, and the upstream's retry-after), or
    /// a connection failure.
    Retryable(GatewayError, Option<Duration>),
    /// Final.
    Final(GatewayError),
}

impl Shared {
    /// Sends one request and waits for its response head, under the first-byte timeout and the
    /// request's deadline.
    pub(crate) async fn exchange(
        &self,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Response<ResponseBody<UpstreamBody>>, Failure> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers;
        let first_byte = deadline.min(Instant::now() + self.timeouts.first_byte());
        let response = match tokio::time::timeout_at(first_byte, self.client.request(request)).await
        {
            Err(_) if first_byte == deadline => {
                return Err(Failure::Final(errors::timed_out(
                    "total",
                    self.timeouts.total(),
                )));
            }
            Err(_) => {
                return Err(Failure::Final(errors::timed_out(
                    "first-byte",
                    self.timeouts.first_byte(),
                )));
            }
            Ok(Err(error)) => {
                return Err(classify_client_error(&error, self.timeouts.connect()));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if is_answer(status) {
            let (mut parts, body) = response.into_parts();
            crate::headers::for_client(&mut parts.headers);
            let body = UpstreamBody::new(body, deadline, self.timeouts.total());
            return Ok(Response::from_parts(parts, ResponseBody::inner(body)));
        }
        if !status.is_client_error() && !status.is_server_error() {
            tracing::warn!(
                %status,
                path = uri.path(),
                location = ?response.headers().get(header::LOCATION),
                "the upstream answered with a status no OpenAI-compatible API answers"
            );
            return Err(Failure::Final(errors::unexpected_status(
                status,
                uri.path(),
            )));
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // An error body is small: read a bounded amount to normalize it.
        let read = Limited::new(response.into_body(), 64 * 1024).collect();
        let body = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            // A body that stalls or breaks still leaves its status to answer with.
            _ => Bytes::new(),
        };
        let error = errors::from_response(status, &body, retry_after, uri.path());
        if is_retryable(status) {
            Err(Failure::Retryable(error, retry_after))
        } else {
            Err(Failure::Final(error))
        }
    }
}

/// Whether `status` is an answer to pass on: 200, or 201 from a provider that answers a
/// creation with it. Any other 1xx, 2xx or 3xx (a 204 without a body, a 202 that promises one
/// later, a redirect) is not what an OpenAI-compatible endpoint answers, and is no success to
/// bill.
fn is_answer(status: StatusCode) -> bool {
    matches!(status, StatusCode::OK | StatusCode::CREATED)
}

fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

fn classify_client_error(
    error: &hyper_util::client::legacy::Error,
    connect_timeout: Duration,
) -> Failure {
    // hyper-util wraps the connector's error: the timeout is an I/O error somewhere beneath.
    let timed_out = source_chain(error)
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if error.is_connect() && timed_out {
        return Failure::Final(errors::timed_out("connect", connect_timeout));
    }
    tracing::warn!(error = %error, "upstream connection failed");
    if error.is_connect() {
        // Refused, DNS: the request never reached the provider, so trying again is safe.
        Failure::Retryable(errors::unreachable(), None)
    } else {
        // The request was sent and the connection broke before an answer: the provider may
        // have run (and billed) it, so it is not sent again.
        Failure::Final(errors::closed())
    }
}
