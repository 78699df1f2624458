use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{BodyLimit, Paths};

/// Streams `text/event-stream` responses through as they arrive, while observers see the
/// parsed events; leaves other responses untouched.
///
/// - Every upstream frame is forwarded as soon as it arrives: never coalesced, never held for
///   an event boundary (except, in usage-stripping mode, the events of the one stream whose
///   usage chunk is removed, which are forwarded whole as each completes).
/// - Observers registered by inner layers through [`SseObservers`](crate::SseObservers) (the
///   balance gate's, your own) run on one parse of the stream.
/// - An upstream failure mid-stream becomes one terminal `data: {"error":{...}}` event carrying
///   the gateway's error envelope, then a clean end (see [`SseBody`](crate::SseBody)).
/// - After a quiet period (15 s by default) a `: keep-alive` comment is sent, at event
///   boundaries only.
/// - Response headers: `content-type: text/event-stream` kept, `cache-control: no-cache`,
///   `x-accel-buffering: no`, and no `content-length`.
/// - With [`inject_usage`](SsePassthroughLayer::inject_usage), a streaming chat request
///   without `stream_options.include_usage` gets it spliced in, and the usage-only chunk is
///   removed from the client's stream: accounting always sees usage, the client sees what it
///   asked for.
/// - When the client goes away the upstream body is dropped (the upstream request is
///   cancelled); with [`drain_on_disconnect`](SsePassthroughLayer::drain_on_disconnect) it is
///   read to its end on a task instead, so observers still see usage.
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
