//! The resolved model: what the catalog layer puts in the request extensions for the guard,
//! rate-limit and balance layers.

use std::sync::Arc;

use http::HeaderName;
pub use jiff::civil::Date;

/// The response header that reports the model that actually served a request (after alias
/// resolution and fallbacks).
pub const X_MODEL: HeaderName = HeaderName::from_static("x-tollgate-model");

/// Prices in integer micro-units of the currency (1 USD = 1,000,000) per million tokens:
/// no floats anywhere near money.
///
/// ```
/// use tollgate_core::Prices;
///
/// // $2.50 per million input tokens, $10 per million output tokens.
/// let prices = Prices::new(2_500_000, 10_000_000);
/// // 1,000 prompt tokens and 500 completion tokens cost $0.0075.
/// assert_eq!(prices.cost(1_000, 500), 7_500);
/// // Fractions of a micro-unit round up: the gateway never undercharges.
/// assert_eq!(prices.cost(1, 0), 3);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prices {
    /// Micro-units per million prompt tokens.
    pub input_per_million: u64,
    /// Micro-units per million completion tokens.
    pub output_per_million: u64,
}

impl Prices {
    /// Input and output prices, in micro-units per million tokens.
    pub const fn new(input_per_million: u64, output_per_million: u64) -> Self {
        Prices {
            input_per_million,
            output_per_million,
        }
    }

    /// The cost of a request in micro-units, rounded up.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        let total = u128::from(prompt_tokens) * u128::from(self.input_per_million)
            + u128::from(completion_tokens) * u128::from(self.output_per_million);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// Where a model is in its life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Lifecycle {
    /// Served normally.
    #[default]
    Active,
    /// Served, with `Deprecation` and `Sunset` headers pointing at the replacement.
    Deprecated {
        /// When it was deprecated, if known.
        deprecated_on: Option<Date>,
        /// When it stops being served.
        sunset: Date,
        /// What to use instead.
        replacement: Option<Arc<str>>,
    },
    /// No longer served: 410 with the replacement.
    Retired {
        /// When it was retired.
        retired_on: Date,
        /// What to use instead.
        replacement: Option<Arc<str>>,
    },
}

/// A model as the catalog resolved it. Cheap to clone.
///
/// ```
/// use tollgate_core::{ModelInfo, Prices};
///
/// let model = ModelInfo::new("gpt-5.4", 400_000, 128_000).prices(Prices::new(2_500_000, 10_000_000));
/// assert_eq!(&*model.id, "gpt-5.4");
/// assert!(model.lifecycle.is_active());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelInfo {
    /// The canonical id (lowercase slug, `provider/model` or plain).
    pub id: Arc<str>,
    /// Who serves it.
    pub owned_by: Arc<str>,
    /// Prompt plus completion tokens the model accepts.
    pub context_window: u64,
    /// The most completion tokens it generates; the default budget when a request sets none.
    pub max_output_tokens: u64,
    /// What it costs.
    pub prices: Prices,
    /// Active, deprecated or retired.
    pub lifecycle: Lifecycle,
}

impl ModelInfo {
    /// An active, free model.
    pub fn new(id: impl Into<Arc<str>>, context_window: u64, max_output_tokens: u64) -> Self {
        ModelInfo {
            id: id.into(),
            owned_by: Arc::from("system"),
            context_window,
            max_output_tokens,
            prices: Prices::default(),
            lifecycle: Lifecycle::Active,
        }
    }

    /// Sets the owner.
    pub fn owned_by(mut self, owner: impl Into<Arc<str>>) -> Self {
        self.owned_by = owner.into();
        self
    }

    /// Sets the prices.
    pub fn prices(mut self, prices: Prices) -> Self {
        self.prices = prices;
        self
    }

    /// Sets the lifecycle.
    pub fn lifecycle(mut self, lifecycle: Lifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }
}

impl Lifecycle {
    /// Whether the model is active.
    pub fn is_active(&self) -> bool {
        matches!(self, Lifecycle::Active)
    }

    /// Whether the model is retired.
    pub fn is_retired(&self) -> bool {
        matches!(self, Lifecycle::Retired { .. })
    }

    /// The replacement, for a deprecated or retired model.
    pub fn replacement(&self) -> Option<&str> {
        match self {
            Lifecycle::Active => None,
            Lifecycle::Deprecated { replacement, .. } | Lifecycle::Retired { replacement, .. } => {
                replacement.as_deref()
            }
        }
    }
}

/// The prompt's token count as the guard established it: exact (from a tokenizer) or an
/// upper bound (from the byte count, when that already decided).
///
/// ```
/// use tollgate_core::PromptTokens;
///
/// assert_eq!(PromptTokens::AtMost(120).value(), 120);
/// assert!(!PromptTokens::AtMost(120).is_exact());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PromptTokens {
    /// Counted with the model's tokenizer.
    Exact(u64),
    /// At most this many: bytes of text plus the per-message overhead.
    AtMost(u64),
}

impl PromptTokens {
    /// The count (or its bound).
    pub fn value(self) -> u64 {
        match self {
            PromptTokens::Exact(n) | PromptTokens::AtMost(n) => n,
        }
    }

    /// Whether it was counted exactly.
    pub fn is_exact(self) -> bool {
        matches!(self, PromptTokens::Exact(_))
    }
}

/// A request's fallback models, in order, as the catalog resolved them: the ones the body
/// named (`"fallbacks": ["model", ...]`, each checked like `model`), else the model's catalog
/// entry's. The upstream tries them when the model still fails after its retries.
///
/// ```
/// use tollgate_core::{ModelInfo, Fallbacks};
///
/// let fallbacks = Fallbacks(vec![ModelInfo::new("gpt-5.4-mini", 400_000, 16_384)]);
/// assert_eq!(&*fallbacks.0[0].id, "gpt-5.4-mini");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks(pub Vec<ModelInfo>);
