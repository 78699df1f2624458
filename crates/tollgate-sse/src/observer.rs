//! Seeing a stream's events as they pass: the observer trait, the per-request registry, and a
//! summary of an OpenAI chat completion stream.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use memchr::memmem;

use serde::Deserialize;
use tollgate_core::Usage;

use crate::Event;
use crate::chunk::{self, ChunkFacts};

/// How a stream ended, as an observer learns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream stream ended normally.
    Completed,
    /// The upstream failed mid-stream; the client got a terminal error event.
    UpstreamFailed,
    /// The client went away before the end (and the stream was not drained).
    ClientGone,
}

/// Sees every event of a stream as it passes, then how it ended. Used by the balance gate for
/// usage, and open to users (metrics, logging, moderation).
///
/// An observer of a response that turns out not to be an event stream is dropped without
/// `on_end`.
///
/// ```
/// use tollgate_sse::{Event, SseObserver, StreamEnd};
///
/// #[derive(Default)]
/// struct CountEvents(usize);
///
/// impl SseObserver for CountEvents {
///     fn on_event(&mut self, _event: &Event<'_>) {
///         self.0 += 1;
///     }
///     fn on_end(&mut self, end: StreamEnd) {
///         tracing::info!(events = self.0, ?end, "stream finished");
///     }
/// }
/// ```
pub trait SseObserver: Send + 'static {
    /// An event arrived (it is forwarded to the client whether or not this looks at it).
    fn on_event(&mut self, event: &Event<'_>);

    /// The stream ended; called once.
    fn on_end(&mut self, end: StreamEnd) {
        let _ = end;
    }
}

/// Observers that inner layers register for the current request's stream. The
/// [`SsePassthroughLayer`](crate::SsePassthroughLayer) puts one in the request extensions and
/// runs what was registered while it parses the stream, so the stream is parsed once however
/// many layers watch it.
///
/// ```
/// use tollgate_sse::{ChatStreamSummary, SseObservers};
///
/// let observers = SseObservers::default();
/// observers.register(ChatStreamSummary::default());
/// assert_eq!(observers.take().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct SseObservers {
    registered: Arc<Mutex<Vec<Box<dyn SseObserver>>>>,
}

impl SseObservers {
    /// Adds an observer for this request's stream.
    pub fn register(&self, observer: impl SseObserver) {
        if let Ok(mut registered) = self.registered.lock() {
            registered.push(Box::new(observer));
        }
    }

    /// Takes every registered observer.
    pub fn take(&self) -> Vec<Box<dyn SseObserver>> {
        self.registered
            .lock()
            .map(|mut registered| std::mem::take(&mut *registered))
            .unwrap_or_default()
    }
}

impl fmt::Debug for SseObservers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self
            .registered
            .lock()
            .map_or(0, |registered| registered.len());
        f.debug_struct("SseObservers")
            .field("registered", &count)
            .finish()
    }
}

/// What an OpenAI chat completion (or Responses API) stream said: its usage, finish reasons,
/// whether `[DONE]` arrived, and how much text it streamed (to estimate output tokens when no
/// usage came).
///
/// ```
/// use tollgate_sse::{ChatStreamSummary, SseParser};
///
/// let stream = concat!(
///     "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
///     "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
///     "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
///     "data: [DONE]\n\n",
/// );
/// let mut summary = ChatStreamSummary::default();
/// SseParser::new().feed(stream.as_bytes(), |event| summary.observe(event));
/// assert_eq!(summary.usage.unwrap().completion_tokens, 2);
/// assert_eq!(summary.finish_reasons, ["stop"]);
/// assert_eq!(summary.content_bytes, 5);
/// assert!(summary.done);
///
/// // The Responses API: named events, usage on the final `response`.
/// let stream = concat!(
///     "event: response.output_text.delta\n",
///     "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
///     "event: response.completed\n",
///     "data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1,\"total_tokens\":10}}}\n\n",
/// );
/// let mut summary = ChatStreamSummary::default();
/// SseParser::new().feed(stream.as_bytes(), |event| summary.observe(event));
/// assert_eq!(summary.usage.unwrap().prompt_tokens, 9);
/// assert_eq!(summary.content_bytes, 2);
/// assert!(!summary.error);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatStreamSummary {
    /// The usage chunk's counts, if one came.
    pub usage: Option<Usage>,
    /// Every non-null `finish_reason`, in order.
    pub finish_reasons: Vec<String>,
    /// Whether `data: [DONE]` arrived.
    pub done: bool,
    /// Bytes of `delta.content` (and tool-call arguments) streamed.
    pub content_bytes: usize,
    /// Chunks seen.
    pub chunks: usize,
    /// Whether an error event arrived.
    pub error: bool,
}

impl ChatStreamSummary {
    /// Folds one event in.
    pub fn observe(&mut self, event: &Event<'_>) {
        if event.data == "[DONE]" {
            self.done = true;
            return;
        }
        let reasons = self.finish_reasons.len();
        let facts = chunk::read(event.data, &mut self.finish_reasons).or_else(|| {
            self.finish_reasons.truncate(reasons);
            parsed(event.data, &mut self.finish_reasons)
        });
        let Some(facts) = facts else {
            return;
        };
        self.chunks += 1;
        self.error |= facts.error;
        if facts.usage.is_some() {
            self.usage = facts.usage;
        }
        self.content_bytes += facts.content_bytes;
    }
}

/// What serde reads of a chunk (the fast read's fallback), finish reasons appended.
pub(crate) fn parsed(data: &str, finish_reasons: &mut Vec<String>) -> Option<ChunkFacts> {
    let chunk = serde_json::from_str::<ChunkView<'_>>(data).ok()?;
    // The Responses API names its events: `error` and `response.failed` end a stream badly,
    // its text comes as `delta`s, and its usage rides on the final `response` object.
    let kind = chunk.kind.as_deref();
    let mut facts = ChunkFacts {
        usage: chunk
            .usage
            .or(chunk.response.and_then(|response| response.usage)),
        error: chunk.error.is_some()
            || kind.is_some_and(|kind| chunk::is_error_kind(kind.as_bytes())),
        content_bytes: 0,
    };
    if kind == Some(chunk::TEXT_DELTA) {
        facts.content_bytes += chunk.delta.map_or(0, |delta| delta.len());
    }
    for choice in chunk.choices.unwrap_or_default() {
        if let Some(reason) = choice.finish_reason {
            finish_reasons.push(reason.into_owned());
        }
        if let Some(delta) = choice.delta {
            facts.content_bytes += delta.content.map_or(0, |content| content.len());
            facts.content_bytes += delta
                .tool_calls
                .unwrap_or_default()
                .iter()
                .filter_map(|call| call.function.as_ref()?.arguments.as_ref())
                .map(|arguments| arguments.len())
                .sum::<usize>();
        }
    }
    Some(facts)
}

impl SseObserver for ChatStreamSummary {
    fn on_event(&mut self, event: &Event<'_>) {
        self.observe(event);
    }
}

/// Whether an event is the usage-only chunk OpenAI sends last when `include_usage` is set:
/// `"choices": []` and a `usage` object.
pub(crate) fn is_usage_only(data: &str) -> bool {
    #[derive(Deserialize)]
    struct UsageOnly {
        choices: Vec<serde::de::IgnoredAny>,
        usage: Option<serde::de::IgnoredAny>,
    }
    // A cheap look first: most chunks carry a delta and no usage, or `"usage":null` (every
    // chunk does once the client asks for usage).
    names_a_usage(data)
        && serde_json::from_str::<UsageOnly>(data)
            .is_ok_and(|chunk| chunk.choices.is_empty() && chunk.usage.is_some())
}

/// Whether `data` has a `"usage"` member whose value is not `null` (or text that looks like
/// one): what a chunk with usage must have.
fn names_a_usage(data: &str) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    // Built once: a substring search's setup costs more than the search in a short event.
    // `find` borrows it; `find_iter` would copy it per event.
    static FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(KEY));
    let mut rest = data.as_bytes();
    while let Some(at) = FINDER.find(rest) {
        rest = &rest[at + KEY.len()..];
        // JSON's whitespace is ASCII: no need to decode characters to skip it.
        if let [b':', value @ ..] = rest.trim_ascii_start()
            && !value.trim_ascii_start().starts_with(b"null")
        {
            return true;
        }
    }
    false
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    response: Option<ResponseView>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
}

/// The `response` object of a Responses API event; its final one carries the usage.
#[derive(Deserialize)]
struct ResponseView {
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaView<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallView<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallView<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionView<'a>>,
}

#[derive(Deserialize)]
struct FunctionView<'a> {
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::is_usage_only;

    #[test]
    fn only_the_chunk_of_usage_alone_is_usage_only() {
        let usage = r#"{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}"#;
        assert!(is_usage_only(&format!(
            r#"{{"choices":[],"usage":{usage}}}"#
        )));
        assert!(is_usage_only(&format!(
            r#"{{"choices": [ ], "usage" :
 {usage}}}"#
        )));
        // A `"usage":null` met first does not hide the usage after it.
        assert!(is_usage_only(&format!(
            r#"{{"meta":{{"usage":null}},"choices":[],"usage":{usage}}}"#
        )));
        // Every chunk carries `"usage":null` once the client asked for usage.
        assert!(!is_usage_only(r#"{"choices":[],"usage":null}"#));
        assert!(!is_usage_only(
            r#"{"choices":[{"delta":{"content":"a"}}],"usage":null}"#
        ));
        assert!(!is_usage_only(&format!(
            r#"{{"choices":[{{"delta":{{}}}}],"usage":{usage}}}"#
        )));
        assert!(!is_usage_only(r#"{"choices":[],"note":"\"usage\": {}"}"#));
        assert!(!is_usage_only("[DONE]"));
    }
}
