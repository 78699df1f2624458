//! The authenticated caller, put in the request extensions by the auth layer.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use crate::spend::SpendCap;

/// A quota: `amount` units per `period`, with an optional burst (the most that can be spent at
/// once; defaults to `amount`).
///
/// A zero amount, burst or period is an error: such a quota could never admit anything.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::Rate;
///
/// let rpm = Rate::per_minute(60)?.with_burst(10)?;
/// assert_eq!(rpm.amount().get(), 60);
/// assert_eq!(rpm.period(), Duration::from_secs(60));
/// assert_eq!(rpm.burst().get(), 10);
/// assert!(Rate::per_minute(0).is_err());
/// # Ok::<(), tollgate_core::InvalidRate>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    amount: NonZeroU64,
    period: Duration,
    burst: Option<NonZeroU64>,
}

impl Rate {
    /// `amount` units per `period`.
    pub fn new(amount: u64, period: Duration) -> Result<Self, InvalidRate> {
        match NonZeroU64::new(amount) {
            Some(amount) if !period.is_zero() => Ok(Rate {
                amount,
                period,
                burst: None,
            }),
            _ => Err(InvalidRate),
        }
    }

    /// `amount` units per second.
    pub fn per_second(amount: u64) -> Result<Self, InvalidRate> {
        Rate::new(amount, Duration::from_secs(1))
    }

    /// `amount` units per minute: OpenAI-style RPM and TPM.
    pub fn per_minute(amount: u64) -> Result<Self, InvalidRate> {
        Rate::new(amount, Duration::from_secs(60))
    }

    /// With at most `burst` units spent at once (`amount` by default).
    pub fn with_burst(mut self, burst: u64) -> Result<Self, InvalidRate> {
        self.burst = Some(NonZeroU64::new(burst).ok_or(InvalidRate)?);
        Ok(self)
    }

    /// Units per period.
    pub fn amount(&self) -> NonZeroU64 {
        self.amount
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The most units spent at once: the configured burst, or `amount`.
    pub fn burst(&self) -> NonZeroU64 {
        self.burst.unwrap_or(self.amount)
    }
}

/// A [`Rate`] with a zero amount, burst or period: it could never admit anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidRate;

impl std::fmt::Display for InvalidRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a rate needs a positive amount, burst and period")
    }
}

impl std::error::Error for InvalidRate {}

/// The authenticated caller: a key id that is safe to log, the account it bills, the models it
/// may use, its own rate limits and its spend caps. Cheap to clone.
///
/// ```
/// use tollgate_core::{Principal, Rate, SpendCap};
///
/// let principal = Principal::new("key_demo", "acct_demo")
///     .with_allowed_models(["gpt-5.4", "openai/gpt-5.4-mini"])
///     .with_request_quota(Rate::per_minute(60)?)
///     .with_spend_caps([SpendCap::monthly(50_000_000)?]);
/// assert!(principal.allows_model("gpt-5.4"));
/// assert!(!principal.allows_model("claude-sonnet-4-6"));
/// assert_eq!(principal.request_quota(), Some(Rate::per_minute(60)?));
/// assert_eq!(principal.spend_caps(), [SpendCap::monthly(50_000_000)?]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    key_id: Arc<str>,
    account_id: Arc<str>,
    allowed_models: Option<Arc<[Arc<str>]>>,
    request_quota: Option<Rate>,
    token_quota: Option<Rate>,
    // `None` rather than an empty slice: a principal without caps allocates nothing for them.
    spend_caps: Option<Arc<[SpendCap]>>,
}

impl Principal {
    /// A caller allowed every model, with the layers' default limits.
    pub fn new(key_id: impl Into<Arc<str>>, account_id: impl Into<Arc<str>>) -> Self {
        Principal {
            key_id: key_id.into(),
            account_id: account_id.into(),
            allowed_models: None,
            request_quota: None,
            token_quota: None,
            spend_caps: None,
        }
    }

    /// Restricted to these canonical model ids.
    pub fn with_allowed_models<I, M>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<Arc<str>>,
    {
        self.allowed_models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// With its own request quota, overriding the rate-limit layer's default.
    pub fn with_request_quota(mut self, rate: Rate) -> Self {
        self.request_quota = Some(rate);
        self
    }

    /// With its own token quota, overriding the rate-limit layer's default.
    pub fn with_token_quota(mut self, rate: Rate) -> Self {
        self.token_quota = Some(rate);
        self
    }

    /// With these spend caps (replacing any set before): every one must have room for a
    /// request's worst case for the balance layer to admit it. One cap per period: a period
    /// given twice keeps its lowest limit (two caps on one period would count one spend twice).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{Principal, SpendCap};
    ///
    /// let principal = Principal::new("key_1", "acct_1").with_spend_caps([
    ///     SpendCap::daily(2_000_000)?,
    ///     SpendCap::monthly(30_000_000)?,
    ///     SpendCap::daily(1_000_000)?,
    ///     SpendCap::rolling(500_000, Duration::from_secs(3_600))?,
    /// ]);
    /// assert_eq!(
    ///     principal.spend_caps(),
    ///     [
    ///         SpendCap::daily(1_000_000)?,
    ///         SpendCap::monthly(30_000_000)?,
    ///         SpendCap::rolling(500_000, Duration::from_secs(3_600))?,
    ///     ]
    /// );
    /// assert!(Principal::new("key_2", "acct_1").spend_caps().is_empty());
    /// # Ok::<(), tollgate_core::InvalidSpendCap>(())
    /// ```
    pub fn with_spend_caps(mut self, caps: impl IntoIterator<Item = SpendCap>) -> Self {
        let mut kept: Vec<SpendCap> = Vec::new();
        for cap in caps {
            match kept.iter_mut().find(|k| k.period() == cap.period()) {
                Some(same) if cap.limit() < same.limit() => *same = cap,
                Some(_) => {}
                None => kept.push(cap),
            }
        }
        self.spend_caps = (!kept.is_empty()).then(|| Arc::from(kept));
        self
    }

    /// The key id: an identifier of the key that is safe to log, never the key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key id as a shared string, to clone without allocating.
    pub fn key_id_shared(&self) -> &Arc<str> {
        &self.key_id
    }

    /// The account id as a shared string, to clone without allocating.
    pub fn account_id_shared(&self) -> &Arc<str> {
        &self.account_id
    }

    /// The account that pays for this caller's requests.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The models this caller may use; `None` means all of them.
    pub fn allowed_models(&self) -> Option<&[Arc<str>]> {
        self.allowed_models.as_deref()
    }

    /// Whether this caller may use the canonical model id `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_deref()
            .is_none_or(|allowed| allowed.iter().any(|m| &**m == model))
    }

    /// This caller's request quota, if it overrides the default.
    pub fn request_quota(&self) -> Option<Rate> {
        self.request_quota
    }

    /// This caller's token quota, if it overrides the default.
    pub fn token_quota(&self) -> Option<Rate> {
        self.token_quota
    }

    /// This caller's spend caps; empty when it has none.
    pub fn spend_caps(&self) -> &[SpendCap] {
        self.spend_caps.as_deref().unwrap_or_default()
    }

    /// This caller's spend caps as a shared slice, to clone without allocating; `None` when it
    /// has none.
    pub fn spend_caps_shared(&self) -> Option<&Arc<[SpendCap]>> {
        self.spend_caps.as_ref()
    }
}
