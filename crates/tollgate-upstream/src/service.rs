//! The upstream service: forward, retry, fall back.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tollgate_core::body::collect_limited;
use tollgate_core::{
    BodyLimit, BoxError, ChatRequest, Fallbacks, GatewayError, ModelInfo, ResponseBody, X_MODEL,
};
use tower::retry::budget::{Budget, TpsBudget};

use crate::config::{RetryPolicy, Timeouts};
use crate::errors;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Forwards requests to an OpenAI-compatible base URL over HTTP or HTTPS (hyper-util's pooled
/// client, rustls with the webpki roots, TCP_NODELAY), streaming the response back as it
/// arrives.
///
/// - Sends the provider key from configuration, never the client's: `authorization`,
///   `x-api-key` and hop-by-hop headers are dropped both ways.
/// - Failures become envelopes: connect/DNS failure → 503 `provider_unavailable`; a connection
///   that breaks after the request was sent → 502 `provider_error` (never re-sent); connect,
///   first-byte or total timeout → 504 `timeout`; upstream 5xx → 502 `provider_error` with the
///   upstream status and message in `details`; upstream 429 → 429 with its `retry-after`; an
///   upstream 4xx error body is normalized into the envelope.
/// - Retries ([`RetryPolicy`]): only 429, 500, 502, 503, 504 and failures to connect,
///   exponential backoff with full jitter, 3 retries by default, an upstream `retry-after`
///   honoured up to a cap (beyond it the model's retries stop and its fallbacks run), and a
///   retry budget (tower's `TpsBudget`: retries may add at most 20% to the request rate) that
///   stops retry storms. A response whose head arrived is never
///   retried once its body started: retries happen before any byte reaches the client.
/// - Fallback models: when a model still fails retryably after its retries, the request goes to
///   the next model of its fallback list (the body's `model` spliced), and the response
///   carries `x-tollgate-model` and the serving model's [`ModelInfo`] (so the balance gate
///   settles at that model's price). The list is the request's [`Fallbacks`], which the catalog
///   resolved (the body's own `fallbacks`, else the model's catalog entry); the body member is
///   removed before it goes upstream.
///
/// ```
/// use std::time::Duration;
/// use tollgate_upstream::{RetryPolicy, Upstream};
///
/// let upstream = Upstream::builder("https://api.openai.com")
///     .unwrap()
///     .api_key("sk-provider-key")
///     .retry(RetryPolicy::default().max_retries(2))
///     .build();
/// # let _ = upstream;
/// ```
#[derive(Clone, Debug)]
pub struct Upstream {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    client: HttpsClient,
    base: Uri,
    api_key: Option<HeaderValue>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    budget: TpsBudget,
    body_limit: BodyLimit,
}

/// Configures an [`Upstream`].
#[derive(Debug)]
pub struct UpstreamBuilder {
    base: Uri,
    api_key: Option<HeaderValue>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    body_limit: BodyLimit,
}

impl Upstream {
    /// Configures an upstream at `base_url` (scheme and authority, and a path prefix if the
    /// API lives under one; the request's own path is appended).
    pub fn builder(base_url: &str) -> Result<UpstreamBuilder, http::uri::InvalidUri> {
        Ok(UpstreamBuilder {
            base: base_url.trim_end_matches('/').parse()?,
            api_key: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            body_limit: BodyLimit::default(),
        })
    }
}

impl UpstreamBuilder {
    /// The provider key, sent as `Authorization: Bearer <key>` instead of the client's.
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = HeaderValue::from_str(&format!("Bearer {key}"))
            .ok()
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        self
    }

    /// Time limits.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Retries.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Limits for a request body no earlier layer read.
    pub fn body_limit(mut self, limit: BodyLimit) -> Self {
        self.body_limit = limit;
        self
    }

    /// Builds the pooled client.
    pub fn build(self) -> Upstream {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.timeouts.connect));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Upstream {
            shared: Arc::new(Shared {
                client: Client::builder(TokioExecutor::new()).build(https),
                base: self.base,
                api_key: self.api_key,
                timeouts: self.timeouts,
                retry: self.retry,
                budget: TpsBudget::new(Duration::from_secs(10), 10, 0.2),
                body_limit: self.body_limit,
            }),
        }
    }
}

impl<B> tower_service::Service<Request<B>> for Upstream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<Incoming>>;
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

/// Why one attempt did not produce a response to pass on.
enum Failure {
    /// Worth retrying: a retryable status (with its error, and the upstream's retry-after), or
    /// a connection failure.
    Retryable(GatewayError, Option<Duration>),
    /// Final.
    Final(GatewayError),
}

impl Shared {
    async fn forward<B>(
        &self,
        request: Request<B>,
    ) -> Result<Response<ResponseBody<Incoming>>, GatewayError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let deadline = Instant::now() + self.timeouts.total;
        // `fallbacks` is the gateway's extension, not the provider's: it never goes upstream.
        let memo = request
            .extensions()
            .get::<ChatRequest>()
            .map(ChatRequest::without_fallbacks);
        let model = request.extensions().get::<ModelInfo>().cloned();
        let fallbacks = request.extensions().get::<Fallbacks>().cloned();
        let (parts, body) = request.into_parts();
        let body = match &memo {
            // Every layer before read the body through the memo: it is the body.
            Some(chat) => chat.body().clone(),
            None => collect_limited(body, self.body_limit.max_bytes())
                .await
                .map_err(|error| GatewayError::from(&error))?,
        };
        let headers = forwarded_headers(&parts.headers, self.api_key.as_ref());
        let uri = self.uri_for(&parts.uri)?;

        let fallbacks = fallbacks
            .as_ref()
            .map(|f| f.0.as_slice())
            .unwrap_or_default();
        let mut last_error = None;
        for (index, candidate) in std::iter::once(model.as_ref())
            .chain(fallbacks.iter().map(Some))
            .enumerate()
        {
            let body = match (index, candidate, &memo) {
                (0, _, _) => body.clone(),
                (_, Some(candidate), Some(chat)) => match chat.with_model(&candidate.id) {
                    Some(rewritten) => rewritten.body().clone(),
                    None => break,
                },
                _ => break,
            };
            match self
                .attempts(&parts.method, &uri, &headers, body, deadline)
                .await
            {
                Ok(mut response) => {
                    if index > 0
                        && let Some(candidate) = candidate
                    {
                        if let Ok(value) = HeaderValue::from_str(&candidate.id) {
                            response.headers_mut().insert(X_MODEL, value);
                        }
                        response.extensions_mut().insert(candidate.clone());
                    }
                    return Ok(response);
                }
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Retryable(error, _)) => {
                    tracing::warn!(
                        model = candidate.map(|m| &*m.id),
                        "model failed after its retries"
                    );
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(errors::unreachable))
    }

    /// One model: the first attempt and its retries.
    async fn attempts(
        &self,
        method: &http::Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Response<ResponseBody<Incoming>>, Failure> {
        self.budget.deposit();
        let mut attempt = 0;
        loop {
            let outcome = self
                .attempt(method, uri, headers, body.clone(), deadline)
                .await;
            let (error, retry_after) = match outcome {
                Ok(response) => return Ok(response),
                Err(Failure::Final(error)) => return Err(Failure::Final(error)),
                Err(Failure::Retryable(error, retry_after)) => (error, retry_after),
            };
            attempt += 1;
            let wait = match retry_after {
                // Too long to wait here: this model is done, but a fallback may still serve.
                Some(after) if after > self.retry.max_retry_after => {
                    return Err(Failure::Retryable(error, retry_after));
                }
                Some(after) => after,
                None => self.retry.jittered(attempt),
            };
            if attempt > self.retry.max_retries
                || Instant::now() + wait >= deadline
                || !self.budget.withdraw()
            {
                return Err(Failure::Retryable(error, retry_after));
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        method: &http::Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Response<ResponseBody<Incoming>>, Failure> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers.clone();
        let first_byte = deadline.min(Instant::now() + self.timeouts.first_byte);
        let response = match tokio::time::timeout_at(first_byte, self.client.request(request)).await
        {
            Err(_) if first_byte == deadline => {
                return Err(Failure::Final(errors::timed_out(
                    "total",
                    self.timeouts.total,
                )));
            }
            Err(_) => {
                return Err(Failure::Final(errors::timed_out(
                    "first-byte",
                    self.timeouts.first_byte,
                )));
            }
            Ok(Err(error)) => {
                return Err(classify_client_error(&error, self.timeouts.connect));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() || status.is_redirection() || status.is_informational() {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Ok(Response::from_parts(parts, ResponseBody::inner(body)));
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
        let error = errors::from_response(status, &body, retry_after);
        if is_retryable(status) {
            Err(Failure::Retryable(error, retry_after))
        } else {
            Err(Failure::Final(error))
        }
    }

    fn uri_for(&self, requested: &Uri) -> Result<Uri, GatewayError> {
        let path = requested.path_and_query().map_or("/", |p| p.as_str());
        let prefix = self.base.path().trim_end_matches('/');
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = format!("{prefix}{path}").parse().ok();
        Uri::from_parts(parts).map_err(|_| GatewayError::internal())
    }
}

fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

fn classify_client_error(
    error: &hyper_util::client::legacy::Error,
    connect_timeout: Duration,
) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut timed_out = false;
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            timed_out = true;
        }
        source = current.source();
    }
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

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&listed) {
        headers.remove(name);
    }
}

/// The client's headers as the upstream should see them: no hop-by-hop, no client key, no
/// host or length (the client sets them), no `accept-encoding` (a compressed answer would hide
/// its usage from the gateway), and the provider key.
fn forwarded_headers(client: &HeaderMap, api_key: Option<&HeaderValue>) -> HeaderMap {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    // No compressed answers: the gateway reads usage from the bytes it forwards.
    for name in [
        header::AUTHORIZATION,
        HeaderName::from_static("x-api-key"),
        header::HOST,
        header::CONTENT_LENGTH,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(name);
    }
    if let Some(key) = api_key {
        headers.insert(header::AUTHORIZATION, key.clone());
    }
    headers
}
