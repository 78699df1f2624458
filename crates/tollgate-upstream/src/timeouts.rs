//! How long the upstream may take.

use std::time::Duration;

/// Time limits of one request to the upstream.
///
/// ```
/// use std::time::Duration;
/// use tollgate_upstream::Timeouts;
///
/// let timeouts = Timeouts::default()
///     .with_connect(Duration::from_secs(2))
///     .with_total(Duration::from_secs(30));
/// assert_eq!(timeouts.connect(), Duration::from_secs(2));
/// assert_eq!(timeouts.first_byte(), Duration::from_secs(60));
/// assert_eq!(timeouts.total(), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    total: Duration,
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

impl Timeouts {
    /// With `timeout` for establishing a connection (10 s by default).
    pub fn with_connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }

    /// With `timeout` from sending a request to its response head, per attempt (60 s by
    /// default; streams start fast).
    pub fn with_first_byte(mut self, timeout: Duration) -> Self {
        self.first_byte = timeout;
        self
    }

    /// With `timeout` for the whole exchange, retries and fallbacks included, up to the end of
    /// the response body (120 s by default): a body still arriving then is cut (see
    /// [`UpstreamBody`](crate::UpstreamBody)).
    pub fn with_total(mut self, timeout: Duration) -> Self {
        self.total = timeout;
        self
    }

    /// The limit for establishing a connection.
    pub fn connect(&self) -> Duration {
        self.connect
    }

    /// The limit from sending a request to its response head, per attempt.
    pub fn first_byte(&self) -> Duration {
        self.first_byte
    }

    /// The limit for the whole exchange, retries and fallbacks included, up to the end of the
    /// response body.
    pub fn total(&self) -> Duration {
        self.total
    }
}
