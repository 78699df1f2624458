use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tollgate_core::admission::{Refused, Respond};
use tollgate_core::{BoxError, ChatRequest, ErrorKind, GatewayError, ModelInfo, ResponseBody};

use smallvec::SmallVec;

use crate::backend::{Check, Decision, INLINE_RULES, QuotaState, RateLimitBackend, Scope};
use crate::headers::{Families, LimitValues, RateHeaders, go_duration, period_name};
use tollgate_core::error::ceil_secs;

/// What deciding on a request needs to know about its rules.
pub struct Planned {
    /// What the backend charges.
    pub(crate) checks: SmallVec<[Check; INLINE_RULES]>,
    /// Per check: its scope, period and cost.
    pub(crate) periods: SmallVec<[(Scope, Duration, u64); INLINE_RULES]>,
    pub(crate) model: Option<Arc<str>>,
    pub(crate) families: Families,
}

/// `(scope, state, period)` per rule.
pub(crate) type Labelled = SmallVec<[(Scope, QuotaState, Duration); INLINE_RULES]>;

/// The headers for the response, and the error to answer with when the request is denied.
pub(crate) fn decide(
    planned: &Planned,
    result: Result<Decision, BoxError>,
    extensions: &http::Extensions,
    limits: &LimitValues,
) -> (RateHeaders, Option<GatewayError>) {
    match result {
        // Without the optional header families only the most constraining state matters:
        // no labelling needed.
        Ok(Decision::Allowed(states)) if !planned.families.any() => {
            (RateHeaders::basic(&states, limits), None)
        }
        Ok(Decision::Allowed(states)) => {
            let labelled = label(planned, states.iter().copied().enumerate());
            (
                RateHeaders::render(&labelled, planned.families, limits),
                None,
            )
        }
        Ok(Decision::Denied {
            index,
            state,
            retry_after,
        }) => {
            let labelled = label(planned, std::iter::once((index, state)));
            let headers = RateHeaders::render(&labelled, planned.families, limits);
            // The model names the limit in the message even when no rule is per model.
            let model = planned.model.clone().or_else(|| {
                let resolved = extensions.get::<ModelInfo>().map(|model| model.id.clone());
                resolved.or_else(|| extensions.get::<ChatRequest>()?.model().map(Arc::from))
            });
            (
                headers,
                Some(denial(planned, model.as_deref(), index, state, retry_after)),
            )
        }
        Err(error) => {
            tracing::error!(error = %error, "rate-limit backend failed");
            let error = GatewayError::state_unavailable(
                "Rate limits could not be checked right now. Retry after a short delay.",
            );
            (RateHeaders::default(), Some(error))
        }
    }
}

fn label(planned: &Planned, states: impl Iterator<Item = (usize, QuotaState)>) -> Labelled {
    states
        .filter_map(|(index, state)| {
            let (scope, period, _) = planned.periods.get(index)?;
            Some((*scope, state, *period))
        })
        .collect()
}

/// The 429, in OpenAI's words, saying the limit is the gateway's.
fn denial(
    planned: &Planned,
    model: Option<&str>,
    index: usize,
    state: QuotaState,
    retry_after: Option<Duration>,
) -> GatewayError {
    let (scope, period, cost) = planned.periods[index];
    let unit = if scope.counts_tokens() {
        "tokens"
    } else {
        "requests"
    };
    let subject = match (model, scope) {
        (Some(model), Scope::KeyModelRequests | Scope::KeyModelTokens) => {
            format!("{model} with your API key")
        }
        (Some(model), Scope::ModelRequests | Scope::ModelTokens) => {
            format!("{model} (all callers)")
        }
        (Some(model), _) => model.to_string(),
        (None, _) => "your API key".into(),
    };
    let per = period_name(period);
    let error = match retry_after {
        Some(wait) => GatewayError::new(
            ErrorKind::RateLimitExceeded,
            format!(
                "Rate limit reached for {subject} on {unit} per {per}: Limit {}, Used {}, Requested {cost}. Please try again in {}. This limit is set by the gateway.",
                state.limit,
                state.limit - state.remaining.min(state.limit),
                go_duration(wait)
            ),
        )
        .retry_after(wait),
        None => GatewayError::new(
            ErrorKind::RateLimitExceeded,
            format!(
                "This request needs {cost} {unit}, more than the gateway's limit of {} {unit} per {per} for {subject} allows at once, so it can never be accepted. Lower max_tokens or shorten the messages.",
                state.limit
            ),
        )
        .should_retry(false),
    };
    error
        .code("rate_limit_exceeded")
        .detail("scope", scope.name())
        .detail("limit", state.limit)
        .detail("remaining", state.remaining)
        .detail("reset", ceil_secs(state.reset))
}

/// The rate limiter's ticket: the headers for the response, and the charge to give back when a
/// layer further in refuses the request (it never reached the provider, so it does not count).
pub struct RateTicket<Bk> {
    pub(crate) headers: RateHeaders,
    pub(crate) charged: Option<(Arc<Bk>, SmallVec<[Check; INLINE_RULES]>)>,
}

impl<Bk> RateTicket<Bk> {
    /// Headers only: nothing was charged.
    pub(crate) fn uncharged(headers: RateHeaders) -> Self {
        RateTicket {
            headers,
            charged: None,
        }
    }
}

impl<B, Bk: RateLimitBackend> Respond<B> for RateTicket<Bk> {
    type Body = ResponseBody<B>;

    fn admitted(self, response: Response<B>) -> Response<ResponseBody<B>> {
        if response.extensions().get::<Refused>().is_some()
            && let Some((backend, checks)) = &self.charged
        {
            backend.refund(checks);
        }
        self.headers.admitted(response)
    }

    fn rejected(self, error: GatewayError) -> Response<ResponseBody<B>> {
        <RateHeaders as Respond<B>>::rejected(self.headers, error)
    }
}
