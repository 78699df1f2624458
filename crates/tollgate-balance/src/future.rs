use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tollgate_core::{BoxError, ErrorKind, GatewayError, ModelInfo, X_MODEL};
use tollgate_sse::{ChatStreamSummary, SseBody, SseObserver, SseObservers};
use tower_service::Service;

use crate::accounting::{Accountant, Ending};
use crate::body::{UsageBody, UsageObserver};
use crate::{Ledger, LedgerError, Micros};

/// The response header with the balance left after the reservation, in micro-units.
pub const X_BALANCE: HeaderName = HeaderName::from_static("x-tollgate-balance");

/// A request on its way: how to settle it, and what to add to its response.
pub(crate) struct Pending<L: Ledger> {
    pub(crate) accountant: Accountant<L>,
    pub(crate) balance_header: bool,
    pub(crate) observers: Option<SseObservers>,
}

pin_project! {
    /// The response future of [`BalanceGate`](crate::BalanceGate).
    pub struct ResponseFuture<S, L, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        L: Ledger,
    {
        #[pin]
        state: State<S, L, ReqBody>,
        pending: Option<Pending<L>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, L, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        L: Ledger,
    {
        Reserving { #[pin] reserve: L::Reserve, waiting: Option<Box<(Request<ReqBody>, S)>> },
        Inner { #[pin] future: S::Future },
        Rejected { error: Option<GatewayError> },
    }
}

impl<S, L, ReqBody> ResponseFuture<S, L, ReqBody>
where
    S: Service<Request<ReqBody>>,
    L: Ledger,
{
    pub(crate) fn unbilled(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Inner { future },
            pending: None,
        }
    }

    pub(crate) fn billed(future: S::Future, pending: Pending<L>) -> Self {
        ResponseFuture {
            state: State::Inner { future },
            pending: Some(pending),
        }
    }

    pub(crate) fn rejected(error: GatewayError) -> Self {
        ResponseFuture {
            state: State::Rejected { error: Some(error) },
            pending: None,
        }
    }

    pub(crate) fn reserving(
        reserve: L::Reserve,
        request: Request<ReqBody>,
        inner: S,
        pending: Pending<L>,
    ) -> Self {
        ResponseFuture {
            state: State::Reserving {
                reserve,
                waiting: Some(Box::new((request, inner))),
            },
            pending: Some(pending),
        }
    }
}

impl<S, L, ReqBody, B> Future for ResponseFuture<S, L, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    L: Ledger,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B, L>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            // Nothing was served: the reservation goes back whole.
                            if let Some(mut pending) = this.pending.take() {
                                pending.accountant.finish(Ending::Failed);
                            }
                            return Poll::Ready(Err(error));
                        }
                    };
                    return Poll::Ready(Ok(match this.pending.take() {
                        Some(pending) => settle_on(response, pending),
                        None => response.map(ResponseBody::passthrough),
                    }));
                }
                StateProj::Rejected { error } => {
                    let error = error.take().unwrap_or_else(GatewayError::internal);
                    return Poll::Ready(Ok(error.into_response().map(ResponseBody::rendered)));
                }
                StateProj::Reserving { reserve, waiting } => {
                    let result = ready!(reserve.poll(cx));
                    let (request, mut inner) = *waiting.take().expect("polled after completion");
                    match result {
                        Ok(reservation) => {
                            if let Some(pending) = this.pending.as_mut() {
                                pending.accountant.reservation = Some(reservation);
                            }
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                        Err(error) => {
                            // Nothing was reserved: nothing to settle.
                            if let Some(mut pending) = this.pending.take() {
                                pending.accountant.reservation = None;
                            }
                            State::Rejected {
                                error: Some(reject(error)),
                            }
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

/// The 402 (or 503 when the ledger is down).
pub(crate) fn reject(error: LedgerError) -> GatewayError {
    match error {
        LedgerError::Insufficient { balance: 0, required } => GatewayError::new(
            ErrorKind::InsufficientBalance,
            "Your prepaid credit has run out. Add credit to resume requests.",
        )
        .code("insufficient_balance")
        .detail("balance", 0)
        .detail("required", required),
        LedgerError::Insufficient { balance, required } => GatewayError::new(
            ErrorKind::InsufficientBalance,
            format!(
                "This request may cost up to {} and your balance is {}. Add credit, or lower max_tokens so the request costs less.",
                money(required),
                money(balance)
            ),
        )
        .code("insufficient_balance")
        .detail("balance", balance)
        .detail("required", required),
        LedgerError::Unavailable(error) => {
            tracing::error!(error = %error, "ledger unavailable");
            GatewayError::new(
                ErrorKind::ServiceUnavailable,
                "Balances could not be checked right now. Retry after a short delay.",
            )
        }
    }
}

/// Micro-units as a decimal amount: 12,500 → `0.0125`.
fn money(micros: Micros) -> String {
    let whole = micros / 1_000_000;
    let fraction = format!("{:06}", micros % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// Arranges for the request to settle as its response ends.
fn settle_on<B, L>(response: Response<B>, mut pending: Pending<L>) -> Response<ResponseBody<B, L>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    L: Ledger,
{
    let (mut parts, body) = response.into_parts();
    let accountant = &mut pending.accountant;
    accountant.record.status = parts.status.as_u16();
    // A fallback served the request: it is billed at the model that answered.
    if let Some(served) = parts.extensions.get::<ModelInfo>() {
        accountant.prices = served.prices;
        accountant.record.model = served.id.clone();
    } else if let Some(served) = parts.headers.get(X_MODEL).and_then(|v| v.to_str().ok())
        && *served != *accountant.record.model
    {
        accountant.record.model = std::sync::Arc::from(served);
    }
    if pending.balance_header
        && let Some(reservation) = &accountant.reservation
    {
        parts
            .headers
            .insert(X_BALANCE, HeaderValue::from(reservation.remaining));
    }
    let mut accountant = pending.accountant;
    if parts.status.is_client_error() || parts.status.is_server_error() {
        accountant.finish(Ending::Failed);
        return Response::from_parts(parts, ResponseBody::passthrough(body));
    }
    let event_stream = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    if !event_stream {
        return Response::from_parts(parts, ResponseBody::json(UsageBody::new(body, accountant)));
    }
    let observer = UsageObserver {
        summary: ChatStreamSummary::default(),
        accountant,
    };
    let body = match pending.observers {
        // The SSE layer outside parses the stream once for every observer.
        Some(observers) => {
            observers.register(observer);
            ResponseBody::passthrough(body)
        }
        None => {
            let observers: Vec<Box<dyn SseObserver>> = vec![Box::new(observer)];
            ResponseBody::stream(SseBody::stream(body, observers, None, false, None))
        }
    };
    Response::from_parts(parts, body)
}

pin_project! {
    /// The response body of [`BalanceGate`](crate::BalanceGate): passed through, watched for
    /// usage (JSON or event stream), or a rendered 402.
    pub struct ResponseBody<B, L: Ledger> {
        #[pin]
        kind: Kind<B, L>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, L: Ledger> {
        Passthrough { #[pin] body: B },
        Json { #[pin] body: UsageBody<B, L> },
        Stream { #[pin] body: SseBody<B> },
        Rendered { body: Full<Bytes> },
    }
}

impl<B, L: Ledger> ResponseBody<B, L> {
    fn passthrough(body: B) -> Self {
        ResponseBody {
            kind: Kind::Passthrough { body },
        }
    }

    fn json(body: UsageBody<B, L>) -> Self {
        ResponseBody {
            kind: Kind::Json { body },
        }
    }

    fn stream(body: SseBody<B>) -> Self {
        ResponseBody {
            kind: Kind::Stream { body },
        }
    }

    fn rendered(body: Full<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Rendered { body },
        }
    }
}

impl<B, L: Ledger> fmt::Debug for ResponseBody<B, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Passthrough { .. } => "ResponseBody::Passthrough",
            Kind::Json { .. } => "ResponseBody::Json",
            Kind::Stream { .. } => "ResponseBody::Stream",
            Kind::Rendered { .. } => "ResponseBody::Rendered",
        })
    }
}

impl<B, L> http_body::Body for ResponseBody<B, L>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    L: Ledger,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body.poll_frame(cx),
            KindProj::Json { body } => body.poll_frame(cx),
            KindProj::Stream { body } => body.poll_frame(cx),
            KindProj::Rendered { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Json { body } => body.is_end_stream(),
            Kind::Stream { body } => body.is_end_stream(),
            Kind::Rendered { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Json { body } => body.size_hint(),
            Kind::Stream { body } => body.size_hint(),
            Kind::Rendered { body } => body.size_hint(),
        }
    }
}
