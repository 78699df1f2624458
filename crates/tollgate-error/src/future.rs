use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tollgate_core::error::source_chain;
use tollgate_core::{BoxError, ErrorKind, GatewayError, ResponseBody};

use crate::RenderError;
use crate::layer::Shared;

pin_project! {
    /// The response future of [`ErrorEnvelope`](crate::ErrorEnvelope).
    pub struct ResponseFuture<F, R> {
        #[pin]
        state: State<F>,
        shared: Arc<Shared<R>>,
        request_id: Option<HeaderValue>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Failed { error: Option<BoxError> },
    }
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn new(future: F, shared: Arc<Shared<R>>, request_id: Option<HeaderValue>) -> Self {
        ResponseFuture {
            state: State::Inner { future },
            shared,
            request_id,
        }
    }

    pub(crate) fn failed(
        error: BoxError,
        shared: Arc<Shared<R>>,
        request_id: Option<HeaderValue>,
    ) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            shared,
            request_id,
        }
    }
}

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    R: RenderError,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.state.project() {
            StateProj::Inner { future } => ready!(future.poll(cx)).map_err(Into::into),
            StateProj::Failed { error } => Err(error
                .take()
                .unwrap_or_else(|| "ErrorEnvelope future polled after completion".into())),
        };
        let request_id = this.request_id.as_ref();
        Poll::Ready(Ok(match result {
            Ok(response) => envelope_response(response, this.shared, request_id),
            Err(error) => {
                let error = classify(error);
                render(
                    Response::new(()),
                    error.status(),
                    &error,
                    this.shared,
                    request_id,
                )
            }
        }))
    }
}

/// Re-renders a response that carries a [`GatewayError`] (or a bare error status with an empty
/// body, like tower-http's timeout answer); passes every other response through untouched.
fn envelope_response<B, R>(
    response: Response<B>,
    shared: &Shared<R>,
    request_id: Option<&HeaderValue>,
) -> Response<ResponseBody<B>>
where
    B: Body<Data = Bytes>,
    R: RenderError,
{
    let status = response.status();
    let error = match response.extensions().get::<GatewayError>() {
        Some(error) => error.clone(),
        None if is_bare_error(&response) => bare_error(status),
        None => return response.map(ResponseBody::inner),
    };
    let request_id = response
        .headers()
        .get(&shared.request_id_header)
        .or(request_id)
        .cloned();
    let (parts, _body) = response.into_parts();
    render(
        Response::from_parts(parts, ()),
        status,
        &error,
        shared,
        request_id.as_ref(),
    )
}

fn is_bare_error<B: Body>(response: &Response<B>) -> bool {
    (response.status().is_client_error() || response.status().is_server_error())
        && response.body().size_hint().exact() == Some(0)
}

fn bare_error(status: StatusCode) -> GatewayError {
    let kind = match status {
        // A bare 404 comes from routing (no such endpoint), never from the model catalog,
        // which always answers with a GatewayError.
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ErrorKind::InvalidRequest,
        other => ErrorKind::from_status(other),
    };
    let message = match status {
        StatusCode::NOT_FOUND => {
            "Unknown request URL. Check the base URL and the endpoint path (for example /v1/chat/completions)."
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            "This endpoint does not accept that HTTP method. Chat completions are sent with POST."
        }
        StatusCode::REQUEST_TIMEOUT => {
            "The request took too long. Send it again, or ask for fewer tokens or use streaming."
        }
        StatusCode::GATEWAY_TIMEOUT => {
            "The request timed out. Request fewer tokens or try streaming."
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "The request body is too large. Shorten the messages or send fewer of them."
        }
        status if status.is_server_error() => {
            return GatewayError::new(kind, GatewayError::internal().message);
        }
        _ => status.canonical_reason().unwrap_or("The request failed."),
    };
    GatewayError::new(kind, message)
}

/// Maps an inner service's error to the envelope the client sees. Only the kind of failure is
/// shown; its detail goes to the log.
fn classify(error: BoxError) -> GatewayError {
    let error = match error.downcast::<GatewayError>() {
        Ok(error) => return *error,
        Err(error) => error,
    };
    for current in source_chain(&*error) {
        if current.is::<tower::timeout::error::Elapsed>() {
            return GatewayError::new(
                ErrorKind::Timeout,
                "The request timed out. Request fewer tokens or try streaming.",
            );
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            match io.kind() {
                Io::TimedOut => {
                    return GatewayError::new(
                        ErrorKind::Timeout,
                        "The upstream provider did not answer in time. Retry later.",
                    );
                }
                Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::NotConnected
                | Io::BrokenPipe
                | Io::AddrNotAvailable
                | Io::HostUnreachable
                | Io::NetworkUnreachable
                | Io::UnexpectedEof => {
                    tracing::warn!(error = %error, "upstream connection failed");
                    return GatewayError::new(
                        ErrorKind::ProviderUnavailable,
                        "The upstream provider could not be reached. Retry later.",
                    );
                }
                _ => {}
            }
        }
    }
    tracing::error!(error = %error, "inner service failed");
    GatewayError::internal()
}

fn render<B, R: RenderError>(
    head: Response<()>,
    status: StatusCode,
    error: &GatewayError,
    shared: &Shared<R>,
    request_id: Option<&HeaderValue>,
) -> Response<ResponseBody<B>> {
    let request_id = request_id.and_then(|id| id.to_str().ok());
    let body = shared.renderer.render(error, request_id);
    let (mut parts, ()) = head.into_parts();
    parts.status = status;
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, shared.renderer.content_type());
    error.apply_headers(&mut parts.headers);
    parts.extensions.insert(error.clone());
    Response::from_parts(parts, ResponseBody::full(body))
}
