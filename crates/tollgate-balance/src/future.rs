use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use http::Response;
use http::header::HeaderName;
use tollgate_core::admission::Respond;
use tollgate_core::spend::{CapPeriod, rfc3339};
use tollgate_core::{
    BoxError, Endpoint, ErrorKind, GatewayError, ModelInfo, X_MODEL, is_event_stream,
};
use tollgate_sse::{ChatStreamSummary, SseBody, SseObserver, SseObservers};

use crate::accounting::{Accountant, Ending};
use crate::body::{BalanceBody, UsageBody, UsageObserver};
use crate::{CapError, CapExceededStatus, CapStore, Ledger, LedgerError, Micros};

/// The response header with the account's unreserved balance once this request's reservation
/// (its worst case) is held, in micro-units: set on the response head, before the request is
/// settled, so it is not what the account holds after the charge (the charge is known only when
/// the body ends; a usage record says it).
pub const X_BALANCE_UNRESERVED: HeaderName =
    HeaderName::from_static("x-tollgate-balance-unreserved");

/// A request on its way: how to settle it, and what to add to its response.
pub struct Hold<L: Ledger, C: CapStore> {
    /// Boxed: it rides in the response future and then in the response body, both of which
    /// every layer above moves; a pointer moves instead.
    pub(crate) accountant: Box<Accountant<L, C>>,
    pub(crate) balance_header: bool,
    pub(crate) observers: Option<SseObservers>,
    /// The routed endpoint: a stream this gate wraps itself reports a failure in its shape.
    pub(crate) endpoint: Option<Endpoint>,
}

/// The balance gate's hold on a request it admitted: the reservation to settle as the
/// response ends (or to release when nothing is served).
pub struct Billing<L: Ledger, C: CapStore>(pub(crate) Option<Hold<L, C>>);

impl<L: Ledger, C: CapStore> fmt::Debug for Billing<L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Billing").field(&self.0.is_some()).finish()
    }
}

impl<B, L, C> Respond<B> for Billing<L, C>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    L: Ledger,
    C: CapStore,
{
    type Body = BalanceBody<B, L, C>;

    fn admitted(self, response: Response<B>) -> Response<BalanceBody<B, L, C>> {
        match self.0 {
            Some(hold) => settle_on(response, hold),
            None => response.map(BalanceBody::passthrough),
        }
    }

    fn rejected(self, error: GatewayError) -> Response<BalanceBody<B, L, C>> {
        error.into_response().map(BalanceBody::rendered)
    }

    fn failed(self) {
        // Nothing was served: the reservation goes back whole.
        if let Some(mut hold) = self.0 {
            hold.accountant.finish(Ending::Failed);
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
            GatewayError::state_unavailable(
"Balances could not be checked right now. Retry after a short delay.",
)
        }
    }
}

/// The 402 (or 429, as the operator chose) for a spend cap without room, or the 503 when the
/// cap store is down.
pub(crate) fn reject_cap(
    error: CapError,
    status: CapExceededStatus,
    now: SystemTime,
) -> GatewayError {
    let exceeded = match error {
        CapError::Exceeded(exceeded) => exceeded,
        CapError::Unavailable(error) => {
            tracing::error!(error = %error, "spend caps unavailable");
            return GatewayError::state_unavailable(
                "Spend caps could not be checked right now. Retry after a short delay.",
            );
        }
    };
    let cap = exceeded.cap;
    let period = match cap.period() {
        CapPeriod::Day => "daily".to_owned(),
        CapPeriod::Week => "weekly".to_owned(),
        CapPeriod::Month => "monthly".to_owned(),
        rolling => rolling.to_string(),
    };
    let resets_at = rfc3339(exceeded.resets_at);
    // A request dearer than the cap itself never fits: waiting for the reset is no use.
    let never = exceeded.required > cap.limit();
    let message = if never {
        format!(
            "This request may cost up to {}, more than this API key's {period} spend cap of {}. Lower max_tokens so the request costs less.",
            money(exceeded.required),
            money(cap.limit()),
        )
    } else {
        format!(
            "This request may cost up to {} and would exceed this API key's {period} spend cap of {} ({} spent, {} held by requests in progress). The cap resets at {resets_at}.",
            money(exceeded.required),
            money(cap.limit()),
            money(exceeded.spent),
            money(exceeded.reserved),
        )
    };
    let kind = match status {
        CapExceededStatus::PaymentRequired => ErrorKind::InsufficientBalance,
        CapExceededStatus::TooManyRequests => ErrorKind::RateLimitExceeded,
    };
    let error = GatewayError::new(kind, message)
        .code("budget_exceeded")
        .detail("period", cap.period().name())
        .detail("cap", cap.limit())
        .detail("spent", exceeded.spent)
        .detail("reserved", exceeded.reserved)
        .detail("required", exceeded.required)
        .detail("resets_at", resets_at);
    match status {
        _ if never => error.should_retry(false),
        CapExceededStatus::TooManyRequests => {
            error.retry_after(exceeded.resets_at.duration_since(now).unwrap_or_default())
        }
        CapExceededStatus::PaymentRequired => error,
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
fn settle_on<B, L, C>(
    response: Response<B>,
    mut pending: Hold<L, C>,
) -> Response<BalanceBody<B, L, C>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    L: Ledger,
    C: CapStore,
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
        parts.headers.insert(
            X_BALANCE_UNRESERVED,
            tollgate_core::number_value(reservation.remaining),
        );
    }
    let mut accountant = pending.accountant;
    if parts.status.is_client_error() || parts.status.is_server_error() {
        accountant.finish(Ending::Failed);
        return Response::from_parts(parts, BalanceBody::passthrough(body));
    }
    if !is_event_stream(&parts.headers) {
        return Response::from_parts(parts, BalanceBody::json(UsageBody::new(body, accountant)));
    }
    let observer = UsageObserver {
        summary: ChatStreamSummary::default(),
        accountant,
    };
    let body = match pending.observers {
        // The SSE layer outside parses the stream once for every observer.
        Some(observers) => {
            observers.register(observer);
            BalanceBody::passthrough(body)
        }
        None => {
            let observers: Vec<Box<dyn SseObserver>> = vec![Box::new(observer)];
            let mut stream = SseBody::stream(body, observers, None, false, None);
            if let Some(endpoint) = pending.endpoint {
                stream = stream.with_endpoint(endpoint);
            }
            BalanceBody::stream(stream)
        }
    };
    Response::from_parts(parts, body)
}
