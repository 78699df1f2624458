//! What the mock does for one request: its normal knobs and the faults it injects.

use std::fmt;
use std::time::Duration;

/// How the mock answers one request. Every field is optional; unset fields take the
/// server's defaults. Set per model with
/// [`MockUpstreamBuilder::model_behavior`](crate::MockUpstreamBuilder::model_behavior), or per
/// request with the `x-mock` header in [`Behavior::parse`]'s syntax.
///
/// Every endpoint that answers a completion (chat completions, responses, legacy completions)
/// honours every field the same way; `GET /v1/models` and `POST /v1/embeddings`, which do
/// not stream, take the first-byte delay and the status and reset faults.
///
/// # Caps
///
/// A request may not make the mock allocate or wait without bound, since the example gateway
/// exposes it to whoever can reach the gateway. What a request asks for is clamped, never
/// rejected:
/// - `chunks` to [`Behavior::MAX_CHUNKS`] (the reply words repeat to fill the chunks, so this
///   also caps the reply's length);
/// - `chunk-delay-ms` to [`Behavior::MAX_CHUNK_DELAY`];
/// - `first-byte-delay-ms` to [`Behavior::MAX_FIRST_BYTE_DELAY`];
/// - `cached-tokens` and `reasoning-tokens` to [`Behavior::MAX_REPORTED_TOKENS`] (and cached
///   tokens to the input tokens, of which they are a part);
/// - an embeddings request's `dimensions` to
///   [`MAX_EMBEDDING_DIMENSIONS`](crate::MAX_EMBEDDING_DIMENSIONS).
///
/// An embeddings request with more than [`MAX_EMBEDDING_INPUTS`](crate::MAX_EMBEDDING_INPUTS)
/// inputs is a 400, as it is at OpenAI. A [`Behavior`] built in code (the builder,
/// [`MockUpstream::set_model_behavior`](crate::MockUpstream::set_model_behavior)) is the test's
/// own and is not capped.
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
///
/// let behavior = Behavior::parse("chunks=1000000; first-byte-delay-ms=3600000").unwrap();
/// assert_eq!(behavior.chunks, Some(Behavior::MAX_CHUNKS));
/// assert_eq!(behavior.first_byte_delay, Some(Behavior::MAX_FIRST_BYTE_DELAY));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behavior {
    /// Content chunks of a stream (and words of a JSON reply), before `max_tokens` (or a
    /// response's `max_output_tokens`) caps them.
    pub chunks: Option<usize>,
    /// Pause before each content chunk of a stream.
    pub chunk_delay: Option<Duration>,
    /// Pause before the response head.
    pub first_byte_delay: Option<Duration>,
    /// Input tokens reported as read from the prompt cache (`cached_tokens` in the usage of a
    /// response, and of a chat completion when set); 0 when unset.
    pub cached_tokens: Option<u64>,
    /// Reasoning tokens reported on top of the reply's (`reasoning_tokens` in the usage of a
    /// response, and of a chat completion when set); 0 when unset.
    pub reasoning_tokens: Option<u64>,
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
    /// Stream this many content chunks (at most the reply's), then report an error in the
    /// stream and end it cleanly, as OpenAI does: a `data: {"error": {...}}` event on chat and
    /// legacy completions (no `[DONE]`), an `event: error` on responses.
    ErrorAfterChunks(usize),
}

impl Behavior {
    /// The most content chunks a request can ask for.
    pub const MAX_CHUNKS: usize = 1000;
    /// The longest pause before each content chunk a request can ask for.
    pub const MAX_CHUNK_DELAY: Duration = Duration::from_secs(10);
    /// The longest pause before the response head a request can ask for: longer than the
    /// usual minute of an upstream timeout, so a request can still trip one.
    pub const MAX_FIRST_BYTE_DELAY: Duration = Duration::from_secs(120);
    /// The most cached or reasoning tokens a request can ask the usage to report.
    pub const MAX_REPORTED_TOKENS: u64 = 1_000_000;

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
    /// `cached-tokens=N`, `reasoning-tokens=N`, `status=N`, `retry-after=N` (with `status`),
    /// `reset`, `abort-after=N`, `error-after=N`. Values over a cap are clamped to it (see
    /// [Caps](Behavior#caps)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_testkit::{Behavior, Fault};
    ///
    /// let behavior = Behavior::parse("error-after=3; cached-tokens=8; reasoning-tokens=64").unwrap();
    /// assert_eq!(behavior.fault, Some(Fault::ErrorAfterChunks(3)));
    /// assert_eq!((behavior.cached_tokens, behavior.reasoning_tokens), (Some(8), Some(64)));
    ///
    /// let behavior = Behavior::parse("chunk-delay-ms=999999").unwrap();
    /// assert_eq!(behavior.chunk_delay, Some(Behavior::MAX_CHUNK_DELAY));
    ///
    /// assert!(Behavior::parse("status=70000").is_err());
    /// assert!(Behavior::parse("explode").is_err());
    /// ```
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
            let millis = |cap: Duration| -> Result<Duration, BehaviorError> {
                Ok(Duration::from_millis(number()?).min(cap))
            };
            let chunks = || -> Result<usize, BehaviorError> {
                Ok(usize::try_from(number()?).unwrap_or(usize::MAX))
            };
            match name.trim() {
                "chunks" => behavior.chunks = Some(chunks()?.min(Behavior::MAX_CHUNKS)),
                "chunk-delay-ms" => {
                    behavior.chunk_delay = Some(millis(Behavior::MAX_CHUNK_DELAY)?);
                }
                "first-byte-delay-ms" => {
                    behavior.first_byte_delay = Some(millis(Behavior::MAX_FIRST_BYTE_DELAY)?);
                }
                "cached-tokens" => {
                    behavior.cached_tokens = Some(number()?.min(Behavior::MAX_REPORTED_TOKENS));
                }
                "reasoning-tokens" => {
                    behavior.reasoning_tokens = Some(number()?.min(Behavior::MAX_REPORTED_TOKENS));
                }
                "status" => status = Some(number()?),
                "retry-after" => retry_after = Some(number()?),
                "reset" => behavior.fault = Some(Fault::ResetBeforeHead),
                "abort-after" => behavior.fault = Some(Fault::AbortAfterChunks(chunks()?)),
                "error-after" => behavior.fault = Some(Fault::ErrorAfterChunks(chunks()?)),
                other => return Err(BehaviorError(format!("unknown directive `{other}`"))),
            }
        }
        match (status, retry_after) {
            (Some(status), retry_after) => {
                let status = u16::try_from(status)
                    .ok()
                    .filter(|status| (100..=999).contains(status))
                    .ok_or_else(|| {
                        BehaviorError(format!("`status` {status} is not an HTTP status"))
                    })?;
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
            cached_tokens: self.cached_tokens.or(fallback.cached_tokens),
            reasoning_tokens: self.reasoning_tokens.or(fallback.reasoning_tokens),
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
