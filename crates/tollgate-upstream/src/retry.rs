//! Retries of one model: the policy, and the loop that follows it.

use std::time::Duration;

use crate::fallback::ClientHeaders;
use bytes::Bytes;
use http::{Method, Response, Uri};
use tokio::time::Instant;
use tollgate_core::{ResponseBody, Telemetry};
use tower::retry::budget::{Budget, TpsBudget};

use crate::body::UpstreamBody;
use crate::exchange::Failure;
use crate::service::Shared;

/// Retries of one model: only 429, 500, 502, 503, 504 and connection failures; exponential
/// backoff with full jitter; an upstream `Retry-After` honoured up to a cap; and a
/// [`RetryBudget`] shared by all requests, which stops retry storms.
///
/// ```
/// use std::time::Duration;
/// use tollgate_upstream::RetryPolicy;
///
/// let policy = RetryPolicy::default().with_max_retries(2).with_base_delay(Duration::from_millis(100));
/// assert_eq!(policy.max_retries(), 2);
/// assert_eq!(policy.delay_cap(1), Duration::from_millis(100));
/// assert_eq!(policy.delay_cap(3), Duration::from_millis(400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
    budget: RetryBudget,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(10),
            budget: RetryBudget::default(),
        }
    }
}

impl RetryPolicy {
    /// With at most `retries` retries per model (3 by default; 0 disables retries).
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// With `delay` as the first backoff's ceiling (250 ms by default); it doubles with each
    /// retry.
    pub fn with_base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// With `delay` as the largest backoff (8 s by default).
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// With `delay` as the longest upstream `Retry-After` waited for (10 s by default); a
    /// longer one ends the model's retries: its fallbacks run, or the 429 and its
    /// `Retry-After` go to the client.
    pub fn with_max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// With `budget` limiting the retries of all requests together ([`RetryBudget::default`]
    /// by default).
    pub fn with_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The most retries per model.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The first backoff's ceiling.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The largest backoff.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The longest upstream `Retry-After` waited for.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// The budget of retries across requests.
    pub fn budget(&self) -> RetryBudget {
        self.budget
    }

    /// The ceiling of the backoff before retry `attempt` (1-based): base × 2^(attempt − 1),
    /// capped. The actual wait is uniform in [0, ceiling] ("full jitter").
    pub fn delay_cap(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    fn jittered(&self, attempt: u32) -> Duration {
        let cap = self.delay_cap(attempt).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=cap))
    }
}

/// How many retries an [`Upstream`](crate::Upstream) may add to its traffic, counted across
/// all its requests: when a provider fails for everyone, retries stop instead of multiplying
/// the load on it.
///
/// Every model a request is sent to deposits into the budget and every retry withdraws from
/// it; a retry the budget cannot pay for is not made, and the model's fallbacks run instead.
/// By default retries may add 20% to the request rate, plus 10 retries a second however
/// quiet the traffic, and a deposit counts for 10 seconds (tower's
/// [`TpsBudget`](tower::retry::budget::TpsBudget) with its default values). A ratio and a
/// minimum of 0 turn retries off.
///
/// ```
/// use std::time::Duration;
/// use tollgate_upstream::{RetryBudget, RetryPolicy};
///
/// // One retry for every ten requests, and none beyond that when traffic is quiet.
/// let budget = RetryBudget::default().with_ratio(0.1).with_min_per_second(0);
/// let policy = RetryPolicy::default().with_budget(budget);
/// assert_eq!(policy.budget().min_per_second(), 0);
/// assert_eq!(policy.budget().ttl(), Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    ratio: f32,
    min_per_second: u32,
    ttl: Duration,
}

// `with_ratio` never stores a NaN, so equality is total.
impl Eq for RetryBudget {}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl RetryBudget {
    /// With retries adding at most `ratio` × the requests (0.2 by default): 0.1 is one retry
    /// for every ten requests, 0 leaves only the per-second minimum. Clamped to 0–1000 (the
    /// range tower accepts); NaN counts as 0.
    pub fn with_ratio(mut self, ratio: f32) -> Self {
        self.ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        self
    }

    /// With `retries` a second allowed on top of the ratio (10 by default), so a quiet
    /// upstream still retries; 0 leaves only the ratio. Clamped below `i32::MAX` (tower's
    /// limit).
    pub fn with_min_per_second(mut self, retries: u32) -> Self {
        self.min_per_second = retries.min(i32::MAX as u32 - 1);
        self
    }

    /// With a deposit counting for `ttl` (10 s by default). Clamped to 1–60 s (the range
    /// tower accepts).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        self
    }

    /// The retries allowed per request, beyond the per-second minimum.
    pub fn ratio(&self) -> f32 {
        self.ratio
    }

    /// The retries a second allowed on top of the ratio.
    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// How long a deposit counts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh budget with these values; the setters kept them in the ranges where tower's
    /// constructor does not panic.
    pub(crate) fn tps_budget(&self) -> TpsBudget {
        TpsBudget::new(self.ttl, self.min_per_second, self.ratio)
    }
}

impl Shared {
    /// One model: the first attempt and its retries.
    pub(crate) async fn send_with_retries(
        &self,
        method: &Method,
        uri: &Uri,
        headers: ClientHeaders<'_>,
        body: Bytes,
        deadline: Instant,
        telemetry: Option<&Telemetry>,
    ) -> Result<Response<ResponseBody<UpstreamBody>>, Failure> {
        self.budget.deposit();
        let mut attempt = 0;
        loop {
            if let Some(telemetry) = telemetry {
                telemetry.add_attempt();
            }
            let outcome = self
                .exchange(
                    method,
                    uri,
                    self.headers.for_request(headers.client, headers.trace),
                    body.clone(),
                    deadline,
                )
                .await;
            let (error, retry_after) = match outcome {
                Ok(response) => return Ok(response),
                Err(Failure::Final(error)) => return Err(Failure::Final(error)),
                Err(Failure::Retryable(error, retry_after)) => (error, retry_after),
            };
            attempt += 1;
            let wait = match retry_after {
                // Too long to wait here: this model is done, but a fallback may still serve.
                Some(after) if after > self.retry.max_retry_after => {
                    return Err(Failure::Retryable(error, retry_after));
                }
                Some(after) => after,
                None => self.retry.jittered(attempt),
            };
            if attempt > self.retry.max_retries
                || Instant::now() + wait >= deadline
                || !self.budget.withdraw()
            {
                return Err(Failure::Retryable(error, retry_after));
            }
            if let Some(telemetry) = telemetry {
                telemetry.add_retry();
            }
            tokio::time::sleep(wait).await;
        }
    }
}
