use std::sync::Arc;

use tollgate_core::{BodyLimit, Paths};

/// Guards requests to the metered endpoints before they cost anything upstream; see the
/// [crate docs](crate).
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::{BodyLimit, Paths};
/// use tollgate_guard::RequestGuardLayer;
///
/// let layer = RequestGuardLayer::new()
///     .body_limit(BodyLimit::default().with_max_bytes(2 << 20).with_read_timeout(Duration::from_secs(10)))
///     .fallback_window(128_000, 4_096)
///     .strict(true);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, Default)]
pub struct RequestGuardLayer {
    pub(crate) config: Arc<Config>,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) body_limit: BodyLimit,
    pub(crate) strict: bool,
    /// Context window and max output when no model was resolved.
    pub(crate) fallback_window: Option<(u64, u64)>,
    pub(crate) paths: Paths,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            body_limit: BodyLimit::default(),
            strict: false,
            fallback_window: None,
            paths: Paths::metered(),
        }
    }
}

impl RequestGuardLayer {
    /// Default limits (4 MiB, 30 s read timeout), lenient about unknown fields, guarding `POST`
    /// to every metered endpoint ([`Paths::metered`]).
    pub fn new() -> Self {
        RequestGuardLayer::default()
    }

    /// The body's size and time limits. A `Content-Length` over the size is answered before a
    /// byte is read; a streamed body stops being read at the frame that crosses it.
    pub fn body_limit(self, limit: BodyLimit) -> Self {
        self.with(|config| config.body_limit = limit)
    }

    /// Rejects top-level fields that are not part of OpenAI's request on the endpoint (off by
    /// default).
    pub fn strict(self, strict: bool) -> Self {
        self.with(|config| config.strict = strict)
    }

    /// The context window and default max output for requests with no resolved model.
    pub fn fallback_window(self, context_window: u64, max_output_tokens: u64) -> Self {
        self.with(|config| config.fallback_window = Some((context_window, max_output_tokens)))
    }

    /// The paths guarded, instead of every metered endpoint's. A request is held to the rules
    /// of the [`Endpoint`](tollgate_core::Endpoint) routed to, else of the one at its path,
    /// else to chat completions'.
    pub fn paths(self, paths: Paths) -> Self {
        self.with(|config| config.paths = paths)
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = (*self.config).clone();
        change(&mut config);
        RequestGuardLayer {
            config: Arc::new(config),
        }
    }
}
