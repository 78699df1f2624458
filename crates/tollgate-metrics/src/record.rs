//! One request's record: opened when the request arrives, finished exactly once, at the end
//! of its response body, or when whatever held it is dropped (the client went away).

use std::sync::Arc;
use std::time::Instant;

use http::Response;
use tollgate_core::{GatewayError, ModelInfo, Recorded, Telemetry, is_event_stream};
use tracing::Span;

use crate::layer::Shared;
use crate::series::{ModelKey, OutcomeKey, Route};

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Its last frame was read.
    Complete,
    /// It was over at the head (so it ended there: a server never polls such a body).
    AtHead,
    /// It failed.
    Failed,
}

/// The response head, as far as the metrics go.
struct Head {
    status: u16,
    error: &'static str,
    served: Served,
    at: Instant,
}

/// The model that answered, as the response head tells it.
enum Served {
    /// None did (an error, or the provider was not reached).
    Nothing,
    /// The one asked for.
    Requested,
    /// A fallback.
    Fallback(Arc<str>),
}

/// A request in flight. Counted in the active gauges from [`start`](InFlight::start) until it
/// is dropped, whatever drops it, so the gauges come back to zero after cancellations too.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    route: Route,
    telemetry: Telemetry,
    span: Span,
    started: Instant,
    head: Option<Head>,
    streaming: bool,
    first_chunk: Option<Instant>,
    end: Option<End>,
}

impl InFlight {
    pub(crate) fn start(
        shared: Arc<Shared>,
        route: Route,
        telemetry: Telemetry,
        started: Instant,
        span: Span,
    ) -> Self {
        shared.series.route(route).active_requests.increment(1.0);
        if !span.is_disabled() {
            span.record("endpoint", route.path());
            if let Some(trace) = telemetry.trace() {
                span.record("trace_id", tracing::field::display(trace.trace_id()));
            }
        }
        InFlight {
            shared,
            route,
            telemetry,
            span,
            started,
            head: None,
            streaming: false,
            first_chunk: None,
            end: None,
        }
    }

    /// The response head is out.
    pub(crate) fn head<B>(&mut self, response: &Response<B>) {
        let status = response.status();
        // Every error kind answers 4xx or 5xx: a success carries none to look up.
        let error = if status.is_success() {
            ""
        } else {
            response
                .extensions()
                .get::<GatewayError>()
                .map_or("", |error| error.kind.type_str())
        };
        // The model that answered: a fallback's, else the one asked for, if the provider was
        // reached and answered well.
        let served = if status.is_success() && self.telemetry.attempts() > 0 {
            match response.extensions().get::<ModelInfo>() {
                Some(fallback) => Served::Fallback(fallback.id.clone()),
                None => Served::Requested,
            }
        } else {
            Served::Nothing
        };
        self.head = Some(Head {
            status: status.as_u16(),
            error,
            served,
            at: Instant::now(),
        });
        if is_event_stream(response.headers()) {
            self.streaming = true;
            let route = self.shared.series.route(self.route);
            route.active_streams.increment(1.0);
        }
    }

    /// A chunk of the body went out (timed for streams only: nothing else reports it).
    pub(crate) fn chunk(&mut self) {
        if self.streaming && self.first_chunk.is_none() {
            self.first_chunk = Some(Instant::now());
        }
    }

    /// The body ended (dropping the record finishes it).
    pub(crate) fn end(&mut self, end: End) {
        self.end = Some(end);
    }

    fn finish(&mut self) {
        let now = match &self.head {
            Some(head) if self.end == Some(End::AtHead) => head.at,
            _ => Instant::now(),
        };
        let route = self.shared.series.route(self.route);
        route.active_requests.decrement(1.0);
        if self.streaming {
            route.active_streams.decrement(1.0);
        }
        // Read in place: the record is only looked at, and copying it costs more than the rest.
        self.telemetry
            .with_recorded(|recorded| self.record(now, recorded));
    }

    fn record(&self, now: Instant, recorded: &Recorded) {
        let shared = &*self.shared;
        let series = &shared.series;
        let telemetry = &self.telemetry;
        let Recorded {
            principal,
            requested_model,
            usage,
            stream_error,
            ..
        } = recorded;
        let (principal, usage) = (principal.as_ref(), *usage);
        let (status, error, served) = match &self.head {
            Some(head) => {
                let error = match (stream_error, self.end) {
                    (Some(kind), _) => kind.type_str(),
                    // An error response is whole at its head (an outer layer may re-render it
                    // and drop this body unread).
                    (None, None) if !head.error.is_empty() => head.error,
                    (None, None) => "cancelled",
                    (None, Some(End::Failed)) if head.error.is_empty() => "provider_error",
                    (None, Some(_)) => head.error,
                };
                let served = match &head.served {
                    Served::Nothing => None,
                    Served::Requested => requested_model.clone(),
                    Served::Fallback(model) => Some(model.clone()),
                };
                (Some(head.status), error, served)
            }
            None => (None, "cancelled", None),
        };
        self.record_span(
            principal,
            requested_model.as_deref(),
            served.as_deref(),
            usage,
            error,
        );
        let models = ModelKey {
            route: self.route,
            requested: requested_model.clone(),
            served,
            key_id: principal
                .filter(|_| shared.key_labels)
                .map(|p| p.key_id_shared().clone()),
            account: principal
                .filter(|_| shared.account_labels)
                .map(|p| p.account_id_shared().clone()),
        };
        let outcome = OutcomeKey { status, error };
        series.finished(models, outcome, |finished| {
            let registrar = &series.registrar;
            let (model, outcome) = (&finished.model, &finished.outcome);
            outcome.requests.increment(1);
            outcome.duration.record((now - self.started).as_secs_f64());
            if let Some(head) = &self.head {
                let after = head.at - self.started;
                outcome.time_to_head.record(after.as_secs_f64());
                let waited = telemetry.upstream_time();
                series
                    .route(self.route)
                    .overhead
                    .record(after.saturating_sub(waited).as_secs_f64());
            }
            if let Some((usage, cost)) = usage {
                model
                    .input_tokens(registrar)
                    .record(usage.prompt_tokens as f64);
                model
                    .output_tokens(registrar)
                    .record(usage.completion_tokens as f64);
                if usage.cached_tokens > 0 {
                    model
                        .cached_tokens(registrar)
                        .increment(usage.cached_tokens);
                }
                if usage.reasoning_tokens > 0 {
                    model
                        .reasoning_tokens(registrar)
                        .increment(usage.reasoning_tokens);
                }
                model.cost(registrar).increment(cost);
            }
            if self.streaming
                && let Some(first) = self.first_chunk
            {
                model
                    .time_to_first_token(registrar)
                    .record((first - self.started).as_secs_f64());
                let after_first =
                    usage.map_or(0, |(usage, _)| usage.completion_tokens.saturating_sub(1));
                if after_first > 0 && self.end == Some(End::Complete) && error.is_empty() {
                    model
                        .time_per_output_token(registrar)
                        .record((now - first).as_secs_f64() / after_first as f64);
                }
            }
            let attempts = telemetry.attempts();
            if attempts > 0 {
                model.attempts(registrar).increment(u64::from(attempts));
            }
            let retries = telemetry.retries();
            if retries > 0 {
                model.retries(registrar).increment(u64::from(retries));
            }
            let fallbacks = telemetry.fallbacks();
            if fallbacks > 0 {
                model.fallbacks(registrar).increment(u64::from(fallbacks));
            }
        });

        if let Some(principal) = principal {
            if shared.key_labels
                && let Some(remaining) = telemetry.rate_limit_remaining()
            {
                series
                    .rate_limit_remaining(principal.key_id_shared())
                    .set(remaining as f64);
            }
            if shared.account_labels
                && let Some(unreserved) = telemetry.balance_unreserved()
            {
                series
                    .balance_unreserved(principal.account_id_shared())
                    .set(unreserved as f64);
            }
        }
    }

    /// What the request span carries once the request is done (for a trace exporter: the
    /// span's log line went out with the head).
    fn record_span(
        &self,
        principal: Option<&tollgate_core::Principal>,
        requested_model: Option<&str>,
        served: Option<&str>,
        usage: Option<(tollgate_core::Usage, u64)>,
        error: &str,
    ) {
        let span = &self.span;
        if span.is_disabled() {
            return;
        }
        if let Some(principal) = principal {
            span.record("account", principal.account_id());
        }
        if let Some(model) = requested_model {
            span.record("request_model", model);
        }
        if let Some(served) = served {
            span.record("response_model", served);
        }
        if let Some((usage, cost)) = usage {
            span.record("input_tokens", usage.prompt_tokens);
            span.record("output_tokens", usage.completion_tokens);
            span.record("cost", cost);
        }
        if !error.is_empty() {
            span.record("error_type", error);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.finish();
    }
}
