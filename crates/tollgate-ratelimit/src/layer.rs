use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;
use tollgate_core::Rate;

use crate::headers::{Families, LimitValues};
use crate::{GovernorBackend, RateLimitBackend};

/// A request quota and a token quota; either may be absent.
///
/// ```
/// use tollgate_core::Rate;
/// use tollgate_ratelimit::Limits;
///
/// let limits = Limits::new().requests(Rate::per_minute(60).unwrap()).tokens(Rate::per_minute(100_000).unwrap());
/// assert_eq!(limits.requests, Some(Rate::per_minute(60).unwrap()));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per period.
    pub requests: Option<Rate>,
    /// Tokens (prompt + requested completion) per period.
    pub tokens: Option<Rate>,
}

impl Limits {
    /// No quota.
    pub fn new() -> Self {
        Limits::default()
    }

    /// Sets the request quota.
    pub fn requests(mut self, rate: Rate) -> Self {
        self.requests = Some(rate);
        self
    }

    /// Sets the token quota.
    pub fn tokens(mut self, rate: Rate) -> Self {
        self.tokens = Some(rate);
        self
    }
}

/// Rate limits per API key, per key and model, and per model, in requests and tokens, with
/// `X-RateLimit-*` headers on every response.
///
/// What it checks and answers is described once, in the [crate documentation](crate).
///
/// ```
/// use tollgate_core::Rate;
/// use tollgate_ratelimit::{Limits, RateLimitLayer};
///
/// let layer = RateLimitLayer::new()
///     .per_key(Limits::new().requests(Rate::per_minute(60).unwrap()).tokens(Rate::per_minute(200_000).unwrap()))
///     .per_model(Limits::new().requests(Rate::per_minute(1_000).unwrap()))
///     .model_limits("gpt-5.4", Limits::new().requests(Rate::per_minute(500).unwrap()))
///     .openai_headers(true);
/// # let _ = layer;
/// ```
#[derive(Debug)]
pub struct RateLimitLayer<B = GovernorBackend> {
    pub(crate) backend: Arc<B>,
    /// Shared by every clone and every service made from this layer, so that
    /// [`reload`](RateLimitLayer::reload) reaches them all.
    pub(crate) rules: Arc<ArcSwap<Rules>>,
}

impl<B> Clone for RateLimitLayer<B> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            backend: self.backend.clone(),
            rules: self.rules.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    pub(crate) per_key: Limits,
    pub(crate) per_key_model: Limits,
    pub(crate) per_model: Limits,
    pub(crate) models: HashMap<Box<str>, Limits, RandomState>,
    pub(crate) families: Families,
    /// Whether any configured rule is per model (so the model is looked up).
    pub(crate) uses_model: bool,
    /// Whether any configured rule counts tokens (so the token cost is computed).
    pub(crate) counts_tokens: bool,
    /// The configured limits' header values.
    pub(crate) limit_values: LimitValues,
}

impl RateLimitLayer {
    /// No rules yet, in memory on governor.
    pub fn new() -> Self {
        RateLimitLayer::with_backend(GovernorBackend::new())
    }
}

impl Default for RateLimitLayer {
    fn default() -> Self {
        RateLimitLayer::new()
    }
}

impl<B: RateLimitBackend> RateLimitLayer<B> {
    /// No rules yet, on `backend` (a Redis backend for limits shared by replicas, or a
    /// governor backend on a fake clock in tests).
    pub fn with_backend(backend: B) -> Self {
        RateLimitLayer {
            backend: Arc::new(backend),
            rules: Arc::new(ArcSwap::from_pointee(Rules::default())),
        }
    }

    /// Default quotas per API key (a principal's own quotas override them).
    pub fn per_key(self, limits: Limits) -> Self {
        self.with(|rules| rules.per_key = limits)
    }

    /// Quotas per API key and model.
    pub fn per_key_model(self, limits: Limits) -> Self {
        self.with(|rules| rules.per_key_model = limits)
    }

    /// Default quotas per model, for all callers together.
    pub fn per_model(self, limits: Limits) -> Self {
        self.with(|rules| rules.per_model = limits)
    }

    /// The per-model quotas of one model (canonical id), instead of the default.
    pub fn model_limits(self, model: impl Into<Box<str>>, limits: Limits) -> Self {
        let model = model.into();
        self.with(|rules| {
            rules.models.insert(model, limits);
        })
    }

    /// Also writes OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
    pub fn openai_headers(self, on: bool) -> Self {
        self.with(|rules| rules.families.openai = on)
    }

    /// Also writes the IETF draft's `RateLimit-Policy` and `RateLimit` fields.
    pub fn ietf_headers(self, on: bool) -> Self {
        self.with(|rules| rules.families.ietf = on)
    }

    fn with(self, change: impl FnOnce(&mut Rules)) -> Self {
        let mut rules = Rules::clone(&self.rules.load());
        change(&mut rules);
        let model_limits = || {
            [rules.per_key_model, rules.per_model]
                .into_iter()
                .chain(rules.models.values().copied())
        };
        rules.uses_model = model_limits().any(|limits| limits != Limits::default());
        rules.counts_tokens =
            rules.per_key.tokens.is_some() || model_limits().any(|limits| limits.tokens.is_some());
        rules.limit_values = LimitValues::new(
            model_limits()
                .chain([rules.per_key])
                .flat_map(|limits| [limits.requests, limits.tokens])
                .flatten()
                .map(|rate| rate.amount().get()),
        );
        RateLimitLayer {
            backend: self.backend,
            rules: Arc::new(ArcSwap::from_pointee(rules)),
        }
    }

    /// Applies `fresh`'s rules (built from a reloaded configuration) from the next request on,
    /// in this layer and every service made from it: the swap is atomic and lock-free, a
    /// request in flight keeps the checks it was charged for, and the backend's state (what
    /// each key has used) is kept.
    ///
    /// ```
    /// use tollgate_core::Rate;
    /// use tollgate_ratelimit::{Limits, RateLimitLayer};
    ///
    /// let live = RateLimitLayer::new().per_key(Limits::new().requests(Rate::per_minute(60)?));
    /// let serving = live.clone();
    /// live.reload(&RateLimitLayer::new().per_key(Limits::new().requests(Rate::per_minute(600)?)));
    /// assert_eq!(serving.per_key_limits().requests, Some(Rate::per_minute(600)?));
    /// # Ok::<(), tollgate_core::InvalidRate>(())
    /// ```
    pub fn reload(&self, fresh: &RateLimitLayer<B>) {
        self.rules.store(fresh.rules.load_full());
    }

    /// The backend (to build a layer with reloaded rules on the same state).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The default per-key quotas in force now.
    pub fn per_key_limits(&self) -> Limits {
        self.rules.load().per_key
    }
}
