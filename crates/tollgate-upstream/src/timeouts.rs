//! How long the upstream may take.

use std::time::Duration;

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
