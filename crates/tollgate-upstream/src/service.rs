//! [`Upstream`] as a tower service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tollgate_core::{BodyLimit, BoxError, GatewayError, ResponseBody};
use tower::retry::budget::TpsBudget;

use crate::body::UpstreamBody;
use crate::headers::OutgoingHeaders;
use crate::retry::RetryPolicy;
use crate::timeouts::Timeouts;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Forwards requests to an OpenAI-compatible base URL over HTTP or HTTPS (hyper-util's pooled
/// client, rustls with the webpki roots, TCP_NODELAY), streaming the response back as it
/// arrives.
///
/// - Sends the provider key from configuration, never the client's, and of the client's
///   headers only those a provider needs (`content-type`, `accept`, `user-agent`,
///   `openai-beta`, `idempotency-key`, `x-request-id`) and those the operator allows
///   ([`UpstreamBuilder::forward_header`](crate::UpstreamBuilder::forward_header)), with the
///   operator's fixed headers ([`UpstreamBuilder::header`](crate::UpstreamBuilder::header)) in
///   place of the client's. Hop-by-hop headers are dropped both ways; the provider's
///   `openai-organization`, `openai-project` and `set-cookie` never reach the client, and its
///   `x-request-id` comes back as `x-upstream-request-id`.
/// - Only a 200 or 201 is passed on as an answer. Failures become envelopes: connect/DNS
///   failure → 503 `provider_unavailable`; a connection that breaks after the request was
///   sent → 502 `provider_error` (never re-sent); connect, first-byte or total timeout → 504
///   `timeout` (a body, a stream above all, still arriving at the total timeout is cut with
///   that error, which the SSE layer turns into the stream's terminal error event); upstream 5xx → 502 `provider_error` with the upstream status and message in
///   `details`; upstream 429 → 429 with its `retry-after`; an upstream 4xx error body is
///   normalized into the envelope, a 404 being `model_not_found` only when the provider's
///   error `code` says so (OpenAI's `model_not_found`, Azure OpenAI's `DeploymentNotFound`;
///   else 502 `provider_error` naming the upstream path); any other
///   1xx, 2xx or 3xx (a 204, a redirect) → 502 `provider_error`, never a success to bill.
/// - Retries ([`RetryPolicy`]): only 429, 500, 502, 503, 504 and failures to connect,
///   exponential backoff with full jitter, 3 retries by default, an upstream `retry-after`
///   honoured up to a cap (beyond it the model's retries stop and its fallbacks run), and a
///   [`RetryBudget`](crate::RetryBudget) (by default retries may add at most 20% to the
///   request rate) that stops retry storms. A response whose head arrived is never
///   retried once its body started: retries happen before any byte reaches the client.
/// - Fallback models: when a model still fails retryably after its retries, the request goes to
///   the next model of its fallback list (the body's `model` spliced), and the response
///   carries `x-tollgate-model` and the serving model's [`ModelInfo`] (so the balance gate
///   settles at that model's price). The list is the request's [`Fallbacks`], which the
///   catalog resolved (the body's own `fallbacks`, else the model's catalog entry); the body
///   member is removed before it goes upstream.
///
/// [`ModelInfo`]: tollgate_core::ModelInfo
/// [`Fallbacks`]: tollgate_core::Fallbacks
///
/// ```
/// use std::time::Duration;
/// use tollgate_upstream::{RetryPolicy, Upstream};
///
/// let upstream = Upstream::builder("https://api.openai.com")?
///     .api_key("sk-provider-key")?
///     .retry(RetryPolicy::default().with_max_retries(2))
///     .build();
/// # let _ = upstream;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Upstream {
    pub(crate) shared: Arc<Shared>,
}

/// What every clone of an [`Upstream`] shares: the pooled client, the configuration, and the
/// retry budget (one for all requests, so retries stay a share of the traffic).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) client: HttpsClient,
    pub(crate) base: Uri,
    pub(crate) headers: OutgoingHeaders,
    pub(crate) timeouts: Timeouts,
    pub(crate) retry: RetryPolicy,
    pub(crate) budget: TpsBudget,
    pub(crate) body_limit: BodyLimit,
}

impl<B> tower_service::Service<Request<B>> for Upstream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<UpstreamBody>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            Ok(match shared.forward(request).await {
                Ok(response) => response,
                Err(error) => error.into_response().map(ResponseBody::from),
            })
        })
    }
}

impl Shared {
    /// Where `requested` goes upstream: its path and query under the base URL's path prefix.
    pub(crate) fn uri_for(&self, requested: &Uri) -> Result<Uri, GatewayError> {
        let prefix = self.base.path().trim_end_matches('/');
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = match requested.path_and_query() {
            // Most bases have no path: the request's own, shared rather than copied.
            Some(path) if prefix.is_empty() => Some(path.clone()),
            path => {
                let path = path.map_or("/", |p| p.as_str());
                format!("{prefix}{path}").parse().ok()
            }
        };
        Uri::from_parts(parts).map_err(|_| GatewayError::internal())
    }
}
