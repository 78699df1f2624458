//! What the mock does for one request: its normal knobs and the faults it injects.

use std::fmt;
use std::time::Duration;

/// How the mock answers one request. Every field is optional; unset fields take the
/// server's defaults. Set per model with
/// [`MockUpstreamBuilder::model_behavior`](crate::MockUpstreamBuilder::model_behavior), or per
/// request with the `x-mock` header in [`Behavior::parse`]'s syntax.
///
/// ```
/// use std::time::Duration;
/// use tollgate_testkit::{Behavior, Fault};
///
/// let behavior = Behavior::parse("status=429; retry-after=2").unwrap();
/// assert_eq!(behavior.fault, Some(Fault::Status { status: 429, retry_after: Some(2) }));
///
/// let behavior = Behavior::parse("chunks=20; chunk-delay-ms=50").unwrap();
/// assert_eq!(behavior.chunks, Some(20));
/// assert_eq!(behavior.chunk_delay, Some(Duration::from_millis(50)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behavior {
    /// Content chunks of a stream (and words of a JSON reply), before `max_tokens` caps them.
    pub chunks: Option<usize>,
    /// Pause before each content chunk of a stream.
    pub chunk_delay: Option<Duration>,
    /// Pause before the response head.
    pub first_byte_delay: Option<Duration>,
    /// The fault to inject, if any.
    pub fault: Option<Fault>,
}

/// A failure the mock injects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an OpenAI-style error body, with `retry-after` (seconds) if set.
    /// A 404's `code` is `model_not_found`, as OpenAI answers a model it does not serve.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `retry-after` header, in seconds.
        retry_after: Option<u64>,
    },
    /// Read the request, then reset the connection (TCP RST) before any response byte.
    ResetBeforeHead,
    /// Stream this many content chunks, then abort the connection mid-body.
    AbortAfterChunks(usize),
}

impl Behavior {
    /// Answering with `status` and an OpenAI-style error body, no `retry-after`.
    ///
    /// ```
    /// use tollgate_testkit::{Behavior, Fault};
    ///
    /// assert_eq!(
    ///     Behavior::status(503),
    ///     Behavior::fault(Fault::Status { status: 503, retry_after: None })
    /// );
    /// ```
    pub fn status(status: u16) -> Self {
        Behavior::fault(Fault::Status {
            status,
            retry_after: None,
        })
    }

    /// The behavior of a fault alone.
    pub fn fault(fault: Fault) -> Self {
        Behavior {
            fault: Some(fault),
            ..Behavior::default()
        }
    }

    /// Parses `;`-separated directives: `chunks=N`, `chunk-delay-ms=N`, `first-byte-delay-ms=N`,
    /// `status=N`, `retry-after=N` (with `status`), `reset`, `abort-after=N`.
    pub fn parse(text: &str) -> Result<Behavior, BehaviorError> {
        let mut behavior = Behavior::default();
        let mut status = None;
        let mut retry_after = None;
        for directive in text.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            let number = || -> Result<u64, BehaviorError> {
                value.trim().parse().map_err(|_| {
                    BehaviorError(format!("`{name}` needs a whole number, got `{value}`"))
                })
            };
            match name.trim() {
                "chunks" => behavior.chunks = Some(number()? as usize),
                "chunk-delay-ms" => behavior.chunk_delay = Some(Duration::from_millis(number()?)),
                "first-byte-delay-ms" => {
                    behavior.first_byte_delay = Some(Duration::from_millis(number()?))
                }
                "status" => status = Some(number()? as u16),
                "retry-after" => retry_after = Some(number()?),
                "reset" => behavior.fault = Some(Fault::ResetBeforeHead),
                "abort-after" => behavior.fault = Some(Fault::AbortAfterChunks(number()? as usize)),
                other => return Err(BehaviorError(format!("unknown directive `{other}`"))),
            }
        }
        match (status, retry_after) {
            (Some(status), retry_after) => {
                if !(100..=999).contains(&status) {
                    return Err(BehaviorError(format!(
                        "`status` {status} is not an HTTP status"
                    )));
                }
                behavior.fault = Some(Fault::Status {
                    status,
                    retry_after,
                })
            }
            (None, Some(_)) => {
                return Err(BehaviorError("`retry-after` goes with `status`".into()));
            }
            (None, None) => {}
        }
        Ok(behavior)
    }

    /// `self`, with every unset field taken from `fallback`.
    pub(crate) fn or(self, fallback: &Behavior) -> Behavior {
        Behavior {
            chunks: self.chunks.or(fallback.chunks),
            chunk_delay: self.chunk_delay.or(fallback.chunk_delay),
            first_byte_delay: self.first_byte_delay.or(fallback.first_byte_delay),
            fault: self.fault.or_else(|| fallback.fault.clone()),
        }
    }
}

/// A malformed `x-mock` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehaviorError(String);

impl fmt::Display for BehaviorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BehaviorError {}
