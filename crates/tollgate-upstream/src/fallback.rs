//! One request through its model and, when that model still fails retryably after its
//! retries, through each of its fallbacks in turn.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use tokio::time::Instant;
use tollgate_core::body::{BodyError, collect_limited};
use tollgate_core::{
    BoxError, ChatRequest, Fallbacks, GatewayError, ModelInfo, ResponseBody, Telemetry,
    TraceContext, X_MODEL,
};

use crate::body::UpstreamBody;
use crate::errors;
use crate::exchange::Failure;
use crate::service::Shared;

/// The request as it goes to the provider.
struct Outgoing<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: ClientHeaders<'a>,
    body: Bytes,
}

/// What each attempt's headers are made from (made anew per attempt, rather than made once
/// and copied for each: most requests have one).
#[derive(Clone, Copy)]
pub(crate) struct ClientHeaders<'a> {
    pub(crate) client: &'a HeaderMap,
    pub(crate) trace: Option<&'a TraceContext>,
}

/// The models that may serve a request, in order, and its parsed body (to splice the model).
struct Candidates {
    model: Option<ModelInfo>,
    fallbacks: Option<Fallbacks>,
    memo: Option<ChatRequest>,
}

impl Shared {
    /// Reads the request once, then sends it to its model and, while each fails retryably,
    /// to the next fallback with the body's `model` spliced; a response from a fallback
    /// carries `x-tollgate-model` and that model's [`ModelInfo`].
    pub(crate) async fn forward<B>(
        &self,
        request: Request<B>,
    ) -> Result<Response<ResponseBody<UpstreamBody>>, GatewayError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let deadline = Instant::now() + self.timeouts.total();
        let (mut parts, body) = request.into_parts();
        // `fallbacks` is the gateway's extension, not the provider's: it never goes upstream.
        let memo = parts
            .extensions
            .get::<ChatRequest>()
            .map(ChatRequest::without_fallbacks);
        // Taken, not cloned: the request ends here.
        let model = parts.extensions.remove::<ModelInfo>();
        let fallbacks = parts.extensions.remove::<Fallbacks>();
        let telemetry = parts.extensions.remove::<Telemetry>();
        let body = match &memo {
            // Every layer before read the body through the memo: it is the body.
            Some(chat) => chat.body().clone(),
            None => self
                .read_unread_body(body)
                .await
                .map_err(|error| GatewayError::from(&error))?,
        };
        let headers = ClientHeaders {
            client: &parts.headers,
            trace: telemetry.as_ref().and_then(Telemetry::trace),
        };
        let uri = self.uri_for(&parts.uri)?;
        let waiting = std::time::Instant::now();
        let outcome = self
            .through_fallbacks(
                Outgoing {
                    method: &parts.method,
                    uri: &uri,
                    headers,
                    body,
                },
                Candidates {
                    model,
                    fallbacks,
                    memo,
                },
                telemetry.as_ref(),
                deadline,
            )
            .await;
        if let Some(telemetry) = &telemetry {
            telemetry.add_upstream_time(waiting.elapsed());
        }
        outcome
    }

    /// The model and then each fallback in turn, while each fails retryably.
    async fn through_fallbacks(
        &self,
        outgoing: Outgoing<'_>,
        candidates: Candidates,
        telemetry: Option<&Telemetry>,
        deadline: Instant,
    ) -> Result<Response<ResponseBody<UpstreamBody>>, GatewayError> {
        let Outgoing {
            method,
            uri,
            headers,
            body,
        } = outgoing;
        let Candidates {
            model,
            fallbacks,
            memo,
        } = candidates;
        let fallbacks = fallbacks.as_ref().map(|f| &f.0[..]).unwrap_or_default();
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
            if index > 0
                && let Some(telemetry) = telemetry
            {
                telemetry.add_fallback();
            }
            match self
                .send_with_retries(method, uri, headers, body, deadline, telemetry)
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

    /// Reads a body no earlier layer read (a passthrough route's, or any request of a stack
    /// without body-aware layers) under the same size and time limits those layers apply, so
    /// that a client cannot hold a request open by never finishing its body.
    async fn read_unread_body<B>(&self, body: B) -> Result<Bytes, BodyError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let read = collect_limited(body, self.body_limit.max_bytes());
        match self.body_limit.read_timeout() {
            Some(after) => tokio::time::timeout(after, read)
                .await
                .unwrap_or(Err(BodyError::TimedOut { after })),
            None => read.await,
        }
    }
}
