//! The resolved model: what the catalog layer puts in the request extensions for the guard,
//! rate-limit and balance layers.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::HeaderName;

use crate::Usage;

/// The response header that reports the model that actually served a request (after alias
/// resolution and fallbacks).
pub const X_MODEL: HeaderName = HeaderName::from_static("x-tollgate-model");

/// Prices in integer micro-units of the currency (1 USD = 1,000,000) per million tokens:
/// no floats anywhere near money.
///
/// ```
/// use tollgate_core::{Prices, Usage};
///
/// // $2.50 per million input tokens, $10 per million output tokens.
/// let prices = Prices::new(2_500_000, 10_000_000);
/// // 1,000 prompt tokens and 500 completion tokens cost $0.0075.
/// assert_eq!(prices.cost(1_000, 500), 7_500);
/// // Fractions of a micro-unit round up: the gateway never undercharges.
/// assert_eq!(prices.cost(1, 0), 3);
///
/// // Cached prompt tokens at $0.25 per million: 800 of the 1,000 came from the cache.
/// let prices = prices.with_cached_input(250_000);
/// let usage = Usage::new(1_000, 500).with_cached_tokens(800);
/// assert_eq!(prices.usage_cost(&usage), 500 + 200 + 5_000);
/// // The worst case (what a reservation sets aside) assumes no cache.
/// assert_eq!(prices.cost(1_000, 500), 7_500);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prices {
    /// Micro-units per million prompt tokens.
    pub input_per_million: u64,
    /// Micro-units per million completion tokens.
    pub output_per_million: u64,
    /// Micro-units per million prompt tokens read from the provider's prompt cache, when the
    /// model has such a price.
    cached_input_per_million: Option<u64>,
}

impl Prices {
    /// Input and output prices, in micro-units per million tokens; cached prompt tokens cost
    /// the input price.
    pub const fn new(input_per_million: u64, output_per_million: u64) -> Self {
        Prices {
            input_per_million,
            output_per_million,
            cached_input_per_million: None,
        }
    }

    /// Sets the price of prompt tokens read from the provider's prompt cache, in micro-units
    /// per million tokens.
    ///
    /// ```
    /// use tollgate_core::Prices;
    ///
    /// let prices = Prices::new(2_500_000, 10_000_000).with_cached_input(250_000);
    /// assert_eq!(prices.cached_input_per_million(), 250_000);
    /// assert_eq!(prices.cached_input_per_million_field(), Some(250_000));
    /// ```
    pub const fn with_cached_input(mut self, per_million: u64) -> Self {
        self.cached_input_per_million = Some(per_million);
        self
    }

    /// What a million cached prompt tokens cost: the cached price when one is set, else the
    /// input price; never above the input price, so that a reservation (which assumes no cache)
    /// always covers it.
    ///
    /// ```
    /// use tollgate_core::Prices;
    ///
    /// assert_eq!(Prices::new(2_500_000, 0).cached_input_per_million(), 2_500_000);
    /// assert_eq!(Prices::new(2_500_000, 0).with_cached_input(9_000_000).cached_input_per_million(), 2_500_000);
    /// ```
    pub const fn cached_input_per_million(&self) -> u64 {
        match self.cached_input_per_million {
            Some(cached) if cached < self.input_per_million => cached,
            _ => self.input_per_million,
        }
    }

    /// The cached-input price as set, if one was.
    pub const fn cached_input_per_million_field(&self) -> Option<u64> {
        self.cached_input_per_million
    }

    /// The cost of a request in micro-units, rounded up, every prompt token at the input price:
    /// the worst case, which a reservation sets aside.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        micros(
            u128::from(prompt_tokens) * u128::from(self.input_per_million)
                + u128::from(completion_tokens) * u128::from(self.output_per_million),
        )
    }

    /// The cost of reported usage in micro-units, rounded up: uncached prompt tokens at the
    /// input price, cached ones at [`cached_input_per_million`](Prices::cached_input_per_million),
    /// completion tokens (reasoning included, as usage counts them) at the output price.
    ///
    /// ```
    /// use tollgate_core::{Prices, Usage};
    ///
    /// let prices = Prices::new(1_000_000, 4_000_000).with_cached_input(100_000);
    /// let usage = Usage::new(10_000, 2_000).with_cached_tokens(6_000).with_reasoning_tokens(1_500);
    /// // 4,000 × $1 + 6,000 × $0.10 + 2,000 × $4, per million.
    /// assert_eq!(prices.usage_cost(&usage), 4_000 + 600 + 8_000);
    /// // Without a cached price, cached tokens cost what the others do.
    /// assert_eq!(Prices::new(1_000_000, 4_000_000).usage_cost(&usage), Prices::new(1_000_000, 4_000_000).cost(10_000, 2_000));
    /// ```
    pub fn usage_cost(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_prompt_tokens();
        micros(
            u128::from(usage.prompt_tokens - cached) * u128::from(self.input_per_million)
                + u128::from(cached) * u128::from(self.cached_input_per_million())
                + u128::from(usage.completion_tokens) * u128::from(self.output_per_million),
        )
    }
}

/// Micro-units per million tokens, summed over tokens, as micro-units: rounded up once, at the
/// end, so that no token is rounded on its own.
fn micros(per_million_sum: u128) -> u64 {
    u64::try_from(per_million_sum.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// A calendar day, as a catalog writes lifecycle dates: `YYYY-MM-DD` (proleptic Gregorian, no
/// time zone). Ordered by time.
///
/// ```
/// use tollgate_core::Date;
///
/// let sunset: Date = "2026-12-31".parse()?;
/// assert_eq!((sunset.year(), sunset.month(), sunset.day()), (2026, 12, 31));
/// assert_eq!(sunset.to_string(), "2026-12-31");
/// assert!(Date::new(2026, 6, 30)? < sunset);
/// assert!("2026-02-30".parse::<Date>().is_err());
/// # Ok::<(), tollgate_core::InvalidDate>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    // In this order, the derived `Ord` is the order of time.
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The day `year-month-day`; an error unless the year has at most four digits and the day
    /// exists (`2028-02-29` does, `2026-02-29` does not).
    pub const fn new(year: u16, month: u8, day: u8) -> Result<Date, InvalidDate> {
        if year > 9999 || month == 0 || month > 12 || day == 0 || day > days_in(year, month) {
            return Err(InvalidDate);
        }
        Ok(Date { year, month, day })
    }

    /// The year, `0..=9999`.
    pub const fn year(self) -> u16 {
        self.year
    }

    /// The month, `1..=12`.
    pub const fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, `1..=31`.
    pub const fn day(self) -> u8 {
        self.day
    }
}

const fn days_in(year: u16, month: u8) -> u8 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for Date {
    type Err = InvalidDate;

    /// Parses exactly `YYYY-MM-DD`.
    fn from_str(text: &str) -> Result<Date, InvalidDate> {
        let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *text.as_bytes() else {
            return Err(InvalidDate);
        };
        match (
            two_digits(y0, y1),
            two_digits(y2, y3),
            two_digits(m0, m1),
            two_digits(d0, d1),
        ) {
            (Some(century), Some(year), Some(month), Some(day)) => {
                Date::new(u16::from(century) * 100 + u16::from(year), month, day)
            }
            _ => Err(InvalidDate),
        }
    }
}

/// The number two ASCII digits spell.
fn two_digits(tens: u8, ones: u8) -> Option<u8> {
    (tens.is_ascii_digit() && ones.is_ascii_digit()).then(|| (tens - b'0') * 10 + (ones - b'0'))
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

// A date reads best in logs and test failures as it is written.
impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Text that is not a [`Date`] in the form `YYYY-MM-DD`, or a day the calendar does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidDate;

impl fmt::Display for InvalidDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a calendar date in the form YYYY-MM-DD")
    }
}

impl std::error::Error for InvalidDate {}

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
/// let fallbacks = Fallbacks([ModelInfo::new("gpt-5.4-mini", 400_000, 16_384)].into());
/// assert_eq!(&*fallbacks.0[0].id, "gpt-5.4-mini");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks(pub Arc<[ModelInfo]>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_yyyy_mm_dd() {
        assert_eq!("2026-06-30".parse(), Date::new(2026, 6, 30));
        assert_eq!("0001-01-01".parse::<Date>().map(Date::year), Ok(1));
        assert_eq!(
            "9999-12-31".parse::<Date>().map(|d| d.to_string()),
            Ok("9999-12-31".into())
        );
        assert!("2028-02-29".parse::<Date>().is_ok(), "a leap year");
        assert!(
            "2000-02-29".parse::<Date>().is_ok(),
            "divisible by 400: a leap year"
        );
        assert_eq!(
            Date::new(999, 1, 2).map(|d| d.to_string()),
            Ok("0999-01-02".into())
        );
        assert_eq!(Date::new(10_000, 1, 1), Err(InvalidDate));
    }

    #[test]
    fn rejects_days_the_calendar_does_not_have() {
        for text in [
            "2026-02-30",
            "2026-02-29",
            "1900-02-29",
            "2026-04-31",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-01-32",
        ] {
            assert_eq!(text.parse::<Date>(), Err(InvalidDate), "{text}");
        }
    }

    #[test]
    fn rejects_other_forms() {
        for text in [
            "",
            "2026-6-30",
            "26-06-30",
            "20260630",
            "2026/06/30",
            "2026-06-30T00:00",
            " 2026-06-30",
            "+026-06-30",
            "2026-+6-30",
            "２026-06-30",
            "2026-06-3x",
        ] {
            assert_eq!(text.parse::<Date>(), Err(InvalidDate), "{text:?}");
        }
    }

    #[test]
    fn orders_by_time() {
        let date = |text: &str| text.parse::<Date>().unwrap();
        assert!(date("2025-12-31") < date("2026-01-01"));
        assert!(date("2026-01-31") < date("2026-02-01"));
        assert!(date("2026-02-01") < date("2026-02-02"));
    }
}
