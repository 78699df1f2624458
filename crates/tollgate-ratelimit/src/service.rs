use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use smallvec::SmallVec;
use tollgate_core::{ChatRequest, ModelInfo, Principal, PromptTokens, Rate, ResponseBody};
use tower_service::Service;

use crate::RateLimitBackend;
use crate::backend::{Check, RuleKey, Scope};
use crate::future::{Planned, ResponseFuture, decide};
use crate::headers::RateHeaders;
use crate::layer::Rules;

/// The service of [`RateLimitLayer`](crate::RateLimitLayer); see there.
#[derive(Debug)]
pub struct RateLimit<S, B> {
    inner: S,
    backend: Arc<B>,
    rules: Arc<Rules>,
}

impl<S: Clone, B> Clone for RateLimit<S, B> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            backend: self.backend.clone(),
            rules: self.rules.clone(),
        }
    }
}

impl<S, B> RateLimit<S, B> {
    pub(crate) fn from_parts(inner: S, backend: Arc<B>, rules: Arc<Rules>) -> Self {
        RateLimit {
            inner,
            backend,
            rules,
        }
    }
}

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    B: RateLimitBackend,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B::Future, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (checks, planned) = plan(&self.rules, &request);
        if checks.is_empty() {
            return ResponseFuture::admitted(self.inner.call(request), RateHeaders::default());
        }
        let mut decision = self.backend.check(&checks);
        // An in-memory backend has answered already: act on it here, so the request goes
        // straight to the inner service instead of through this future.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(result) = Pin::new(&mut decision).poll(&mut cx) {
            return match decide(&planned, result, request.extensions()) {
                (headers, None) => ResponseFuture::admitted(self.inner.call(request), headers),
                (headers, Some(error)) => ResponseFuture::rejected(error, headers),
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::checking(decision, request, inner, planned)
    }
}

/// The checks a request must pass, from the principal, the model and the token cost.
fn plan<B>(rules: &Rules, request: &Request<B>) -> (SmallVec<[Check; 2]>, Planned) {
    let extensions = request.extensions();
    let principal = extensions.get::<Principal>();
    let needs_tokens = rules.counts_tokens || principal.is_some_and(|p| p.token_quota().is_some());
    // Only what the configured rules use is looked up.
    let (resolved, chat) = if rules.uses_model || needs_tokens {
        (
            extensions.get::<ModelInfo>(),
            extensions.get::<ChatRequest>(),
        )
    } else {
        (None, None)
    };
    let model: Option<Arc<str>> = match (rules.uses_model, resolved) {
        (false, _) => None,
        (true, Some(resolved)) => Some(resolved.id.clone()),
        (true, None) => chat.and_then(|chat| chat.model()).map(Arc::from),
    };
    let tokens = if needs_tokens {
        let prompt = extensions
            .get::<PromptTokens>()
            .map(|tokens| tokens.value())
            .or_else(|| chat.map(|chat| chat.prompt_bytes() as u64))
            .unwrap_or(0);
        let completion = chat
            .and_then(|chat| chat.completion_budget(resolved))
            .unwrap_or(0);
        prompt.saturating_add(completion)
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
    let planned = Planned {
        periods,
        model,
        families: rules.families,
    };
    (checks, planned)
}
