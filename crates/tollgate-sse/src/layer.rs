use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{BodyLimit, Paths};

/// Streams `text/event-stream` responses through as they arrive, while observers see the
/// parsed events; leaves other responses untouched.
///
/// What it checks and answers is described once, in the [crate documentation](crate).
///
/// ```
/// use std::time::Duration;
/// use tollgate_sse::SsePassthroughLayer;
///
/// let layer = SsePassthroughLayer::new()
///     .keep_alive(Duration::from_secs(10))
///     .inject_usage(true);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, Default)]
pub struct SsePassthroughLayer {
    pub(crate) config: Arc<Config>,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) inject_usage: bool,
    pub(crate) drain_on_disconnect: bool,
    pub(crate) body_limit: BodyLimit,
    pub(crate) paths: Paths,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keep_alive: Some(Duration::from_secs(15)),
            inject_usage: false,
            drain_on_disconnect: false,
            body_limit: BodyLimit::default(),
            paths: Paths::chat_completions(),
        }
    }
}

impl SsePassthroughLayer {
    /// Keep-alives after 15 s of quiet; no usage injection; cancel on disconnect.
    pub fn new() -> Self {
        SsePassthroughLayer::default()
    }

    /// Sends a `: keep-alive` comment after this much quiet.
    pub fn keep_alive(self, period: Duration) -> Self {
        self.with(|config| config.keep_alive = Some(period))
    }

    /// Sends no keep-alive comments.
    pub fn no_keep_alive(self) -> Self {
        self.with(|config| config.keep_alive = None)
    }

    /// Asks the upstream for usage on every stream, and hides it from clients that did not.
    pub fn inject_usage(self, inject: bool) -> Self {
        self.with(|config| config.inject_usage = inject)
    }

    /// Reads the upstream to its end when the client goes away, for accounting.
    pub fn drain_on_disconnect(self, drain: bool) -> Self {
        self.with(|config| config.drain_on_disconnect = drain)
    }

    /// The body limits used when usage injection is the first to read a request body.
    pub fn body_limit(self, limit: BodyLimit) -> Self {
        self.with(|config| config.body_limit = limit)
    }

    /// The chat endpoints whose requests get usage injected, instead of
    /// `/v1/chat/completions`.
    pub fn paths(self, paths: Paths) -> Self {
        self.with(|config| config.paths = paths)
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = (*self.config).clone();
        change(&mut config);
        SsePassthroughLayer {
            config: Arc::new(config),
        }
    }
}
