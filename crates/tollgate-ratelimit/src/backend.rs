//! The backend contract: check n units against a set of rule keys, all or nothing.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;
use tollgate_core::{BoxError, Rate};

/// Which rule a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Requests per API key.
    KeyRequests,
    /// Tokens per API key.
    KeyTokens,
    /// Requests per API key and model.
    KeyModelRequests,
    /// Tokens per API key and model.
    KeyModelTokens,
    /// Requests per model, all callers together.
    ModelRequests,
    /// Tokens per model, all callers together.
    ModelTokens,
}

impl Scope {
    /// Whether the rule counts tokens (else requests).
    pub fn counts_tokens(self) -> bool {
        matches!(
            self,
            Scope::KeyTokens | Scope::KeyModelTokens | Scope::ModelTokens
        )
    }

    /// The name used in error details and structured headers.
    pub fn name(self) -> &'static str {
        match self {
            Scope::KeyRequests => "key_requests",
            Scope::KeyTokens => "key_tokens",
            Scope::KeyModelRequests => "key_model_requests",
            Scope::KeyModelTokens => "key_model_tokens",
            Scope::ModelRequests => "model_requests",
            Scope::ModelTokens => "model_tokens",
        }
    }
}

/// The key of one rule's state: the rule, the caller's key id and the model, as they apply.
/// Built from shared strings, so making one allocates nothing.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_ratelimit::{RuleKey, Scope};
///
/// let key = RuleKey::new(Scope::KeyModelRequests, Some(Arc::from("key_1")), Some(Arc::from("gpt-5.4")));
/// assert_eq!(key.to_string(), "key_model_requests:key_1:gpt-5.4");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleKey {
    /// The rule.
    pub scope: Scope,
    /// The caller's key id, for per-key rules.
    pub key_id: Option<Arc<str>>,
    /// The model, for per-model rules.
    pub model: Option<Arc<str>>,
}

impl RuleKey {
    /// A rule key.
    pub fn new(scope: Scope, key_id: Option<Arc<str>>, model: Option<Arc<str>>) -> Self {
        RuleKey {
            scope,
            key_id,
            model,
        }
    }
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scope.name())?;
        for part in [&self.key_id, &self.model].into_iter().flatten() {
            write!(f, ":{part}")?;
        }
        Ok(())
    }
}

/// One rule to charge: its key, its quota, and how many units the request costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Whose state.
    pub key: RuleKey,
    /// The quota.
    pub rate: Rate,
    /// Units this request costs (1 for request rules, tokens for token rules).
    pub cost: u64,
}

/// A rule's state after a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaState {
    /// The most units the rule allows at once (its burst; the per-period amount by default).
    pub limit: u64,
    /// Units left right now.
    pub remaining: u64,
    /// Time until the rule is full again.
    pub reset: Duration,
}

/// The rules a request is checked against without a heap allocation for their checks and
/// states: a key's requests and tokens and a model's requests (the example's three) and one
/// more. More rules work, and allocate.
pub const INLINE_RULES: usize = 4;

/// One state per check, in check order; stored inline for up to [`INLINE_RULES`] rules, so an
/// allowed request does not allocate.
///
/// ```
/// use std::time::Duration;
/// use tollgate_ratelimit::{QuotaState, States};
///
/// let state = QuotaState { limit: 10, remaining: 9, reset: Duration::from_secs(6) };
/// let states: States = [state, state].into_iter().collect();
/// assert_eq!(states.len(), 2);
/// assert_eq!(states[1].remaining, 9);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct States(SmallVec<[QuotaState; INLINE_RULES]>);

impl States {
    /// No state yet.
    pub fn new() -> Self {
        States::default()
    }

    /// Adds the state of the next check.
    pub fn push(&mut self, state: QuotaState) {
        self.0.push(state);
    }
}

impl std::ops::Deref for States {
    type Target = [QuotaState];

    fn deref(&self) -> &[QuotaState] {
        &self.0
    }
}

impl FromIterator<QuotaState> for States {
    fn from_iter<I: IntoIterator<Item = QuotaState>>(states: I) -> Self {
        States(states.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a States {
    type Item = &'a QuotaState;
    type IntoIter = std::slice::Iter<'a, QuotaState>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every rule had room; each was charged. One state per check, in order.
    Allowed(States),
    /// A rule had no room; nothing was charged.
    Denied {
        /// Which check.
        index: usize,
        /// Its state.
        state: QuotaState,
        /// When the same request could pass; `None` if it never can (its cost exceeds the limit).
        retry_after: Option<Duration>,
    },
}

/// Where rate-limit state lives. [`GovernorBackend`](crate::GovernorBackend) is the in-memory
/// default; a Redis backend shares limits across gateway replicas behind the same trait.
///
/// `check` is all-or-nothing: either every check is charged, or none is.
pub trait RateLimitBackend: Send + Sync + 'static {
    /// The check's future (`Unpin`: an in-memory answer is taken on the spot, without moving
    /// the request into a future; a network backend can return a boxed future).
    type Future: Future<Output = Result<Decision, BoxError>> + Send + Unpin + 'static;

    /// Charges `checks` if all have room. A backend whose future outlives the call copies
    /// what it needs.
    fn check(&self, checks: &[Check]) -> Self::Future;

    /// Gives back what an allowed [`check`](RateLimitBackend::check) of `checks` charged: a
    /// layer further in refused the request, so it does not count against the quotas. Called
    /// as the response passes; a network backend may finish it in the background.
    fn refund(&self, checks: &[Check]);
}

impl<B: RateLimitBackend> RateLimitBackend for Arc<B> {
    type Future = B::Future;

    fn check(&self, checks: &[Check]) -> Self::Future {
        (**self).check(checks)
    }

    fn refund(&self, checks: &[Check]) {
        (**self).refund(checks);
    }
}
