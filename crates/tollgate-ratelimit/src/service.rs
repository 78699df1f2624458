use std::sync::Arc;
use tower_layer::Layer;

use http::Request;
use smallvec::SmallVec;
use tollgate_core::admission::{Admission, AdmissionFuture, Carry, Start, Verdict};
use tollgate_core::{BoxError, ChatRequest, ModelInfo, Principal, Rate, Telemetry, TokenEstimate};

use crate::backend::{Check, Decision, RuleKey, Scope};
use crate::future::{Planned, RateTicket, decide};
use crate::headers::RateHeaders;
use crate::layer::Rules;
use crate::{RateLimitBackend, RateLimitLayer};

/// The service of [`RateLimitLayer`]; see there.
#[derive(Debug)]
pub struct RateLimit<S, B> {
    inner: S,
    admission: RateLimitLayer<B>,
}

impl<S, B: RateLimitBackend> RateLimit<S, B> {
    /// Rate limits `inner` by `layer`'s rules.
    pub fn new(inner: S, layer: RateLimitLayer<B>) -> Self {
        layer.layer(inner)
    }
}

impl<S> RateLimit<S, crate::GovernorBackend> {
    /// A [`RateLimitLayer`] with no rules yet, in memory on governor.
    pub fn layer() -> RateLimitLayer {
        RateLimitLayer::new()
    }
}

tollgate_core::admission_service!(RateLimit<S, B> => RateLimitLayer<B>);

/// The response future of [`RateLimit`].
pub type ResponseFuture<S, Bk, B> = AdmissionFuture<S, RateLimitLayer<Bk>, B>;

impl<B, Bk: RateLimitBackend> Admission<B> for RateLimitLayer<Bk> {
    type Ticket = RateTicket<Bk>;
    type Pending = Carry<Bk::Future, Planned>;

    // Inlined into the admission future, see `Start::after`.
    #[inline(always)]
    fn start(&self, request: &mut Request<B>) -> Start<RateTicket<Bk>, Self::Pending> {
        let planned = plan(&self.rules.load(), request);
        if planned.checks.is_empty() {
            return Start::Decided(Verdict::Admit(
                RateTicket::uncharged(RateHeaders::default()),
            ));
        }
        let checking = self.backend.check(&planned.checks);
        Start::after(self, request, checking, planned)
    }

    #[inline(always)]
    fn resume(
        &self,
        (result, planned): (Result<Decision, BoxError>, Planned),
        request: &mut Request<B>,
    ) -> Verdict<RateTicket<Bk>> {
        let decided = decide(
            &planned,
            result,
            request.extensions(),
            &self.rules.load().limit_values,
        );
        if let (Some(remaining), Some(telemetry)) =
            (decided.0.remaining, request.extensions().get::<Telemetry>())
        {
            telemetry.set_rate_limit_remaining(remaining);
        }
        match decided {
            (headers, None) => Verdict::Admit(RateTicket {
                headers,
                charged: Some((self.backend.clone(), planned.checks)),
            }),
            (headers, Some(error)) => Verdict::Reject(error, RateTicket::uncharged(headers)),
        }
    }
}

/// The checks a request must pass, from the principal, the model and the token cost.
fn plan<B>(rules: &Rules, request: &Request<B>) -> Planned {
    let extensions = request.extensions();
    let principal = extensions.get::<Principal>();
    let needs_tokens = rules.counts_tokens || principal.is_some_and(|p| p.token_quota().is_some());
    // Only what the configured rules use is looked up.
    let model: Option<Arc<str>> = if rules.uses_model {
        match extensions.get::<ModelInfo>() {
            Some(resolved) => Some(resolved.id.clone()),
            None => extensions
                .get::<ChatRequest>()
                .and_then(ChatRequest::model)
                .map(Arc::from),
        }
    } else {
        None
    };
    let tokens = if needs_tokens {
        TokenEstimate::of(extensions).total()
    } else {
        0
    };

    let mut checks = SmallVec::new();
    let mut periods = SmallVec::new();
    let mut add =
        |scope: Scope, rate: Option<Rate>, key_id: Option<&Arc<str>>, model: Option<&Arc<str>>| {
            let Some(rate) = rate else { return };
            let cost = if scope.counts_tokens() { tokens } else { 1 };
            if cost == 0 {
                return;
            }
            checks.push(Check {
                key: RuleKey::new(scope, key_id.cloned(), model.cloned()),
                rate,
                cost,
            });
            periods.push((scope, rate.period(), cost));
        };
    let key_id = principal.map(Principal::key_id_shared);
    if let Some(key_id) = &key_id {
        let requests = principal
            .and_then(Principal::request_quota)
            .or(rules.per_key.requests);
        let token_rate = principal
            .and_then(Principal::token_quota)
            .or(rules.per_key.tokens);
        add(Scope::KeyRequests, requests, Some(key_id), None);
        add(Scope::KeyTokens, token_rate, Some(key_id), None);
        if let Some(model) = &model {
            add(
                Scope::KeyModelRequests,
                rules.per_key_model.requests,
                Some(key_id),
                Some(model),
            );
            add(
                Scope::KeyModelTokens,
                rules.per_key_model.tokens,
                Some(key_id),
                Some(model),
            );
        }
    }
    if let Some(model) = &model {
        let limits = rules
            .models
            .get(&**model)
            .copied()
            .unwrap_or(rules.per_model);
        add(Scope::ModelRequests, limits.requests, None, Some(model));
        add(Scope::ModelTokens, limits.tokens, None, Some(model));
    }
    Planned {
        checks,
        periods,
        model,
        families: rules.families,
    }
}
