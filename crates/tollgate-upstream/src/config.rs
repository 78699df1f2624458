//! How to reach the upstream and when to try again.

use std::time::Duration;

/// Retries of one model: only 429, 500, 502, 503, 504 and connection failures; exponential
/// backoff with full jitter; an upstream `Retry-After` honoured up to a cap.
///
/// ```
/// use std::time::Duration;
/// use tollgate_upstream::RetryPolicy;
///
/// let policy = RetryPolicy::default().max_retries(2).base_delay(Duration::from_millis(100));
/// assert_eq!(policy.delay_cap(1), Duration::from_millis(100));
/// assert_eq!(policy.delay_cap(3), Duration::from_millis(400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) base_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_retry_after: Duration,
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
    /// At most this many retries per model (3 by default; 0 disables retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first backoff's ceiling (250 ms by default); it doubles with each retry.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The largest backoff (8 s by default).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The longest upstream `Retry-After` waited for (10 s by default); a longer one is passed
    /// to the client instead.
    pub fn max_retry_after(mut self, delay: Duration) -> Self {
        self.max_retry_after = delay;
        self
    }

    /// The ceiling of the backoff before retry `attempt` (1-based): base × 2^(attempt − 1),
    /// capped. The actual wait is uniform in [0, ceiling] ("full jitter").
    pub fn delay_cap(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    pub(crate) fn jittered(&self, attempt: u32) -> Duration {
        let cap = self.delay_cap(attempt).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=cap))
    }
}

/// Time limits of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection (10 s by default).
    pub connect: Duration,
    /// From sending the request to the response head (60 s by default; streams start fast).
    pub first_byte: Duration,
    /// The whole exchange up to the response head, retries and fallbacks included
    /// (120 s by default).
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            total: Duration::from_secs(120),
        }
    }
}
