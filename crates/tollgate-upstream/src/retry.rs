//! Retries of one model: the policy, and the loop that follows it.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, Response, Uri};
use hyper::body::Incoming;
use tokio::time::Instant;
use tollgate_core::ResponseBody;
use tower::retry::budget::Budget;

use crate::exchange::Failure;
use crate::service::Shared;

/// Retries of one model: only 429, 500, 502, 503, 504 and connection failures; exponential
/// backoff with full jitter; an upstream `Retry-After` honoured up to a cap.
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
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(10),
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

impl Shared {
    /// One model: the first attempt and its retries.
    pub(crate) async fn send_with_retries(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Response<ResponseBody<Incoming>>, Failure> {
        self.budget.deposit();
        let mut attempt = 0;
        loop {
            let outcome = self
                .exchange(method, uri, headers, body.clone(), deadline)
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
            tokio::time::sleep(wait).await;
        }
    }
}
