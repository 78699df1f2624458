//! An OpenAI-compatible mock upstream for testing LLM gateways, with fault injection.
//!
//! [`MockUpstream`] listens on an ephemeral loopback port and serves
//! - `POST /v1/chat/completions`: a JSON completion whose `usage` is computed from the input
//!   (see [`prompt_tokens`]; one completion token per reply word), or, with `"stream": true`,
//!   an SSE stream of one chunk per word with a configurable pause between chunks, the
//!   `include_usage` chunk when asked for, and `data: [DONE]`;
//! - `POST /v1/responses` (the Responses API): a `response` object whose one `message` item
//!   holds the reply, or, with `"stream": true`, OpenAI's named events (`response.created`,
//!   one `response.output_text.delta` per word, …, `response.completed` with the usage). Input
//!   tokens are counted as for chat: `instructions` and a string `input` are a message each,
//!   an `input` array a message per item, whose text is its `content`. `max_output_tokens`
//!   cuts the reply (the response is then `incomplete`);
//! - `POST /v1/completions` (legacy): a `text_completion`, as JSON or as chunks ending in
//!   `data: [DONE]`, one choice whatever the number of prompts. A string prompt counts a
//!   quarter of its bytes, rounded up, a token-id prompt one token per id;
//! - `POST /v1/embeddings`: one unit vector per input, derived from the input alone, of
//!   [`EMBEDDING_DIMENSIONS`] unless the request asks for `dimensions`; inputs count as legacy
//!   prompts do;
//! - `GET /v1/models`: the configured model ids.
//!
//! Usage reports `cached_tokens` and `reasoning_tokens` as the behavior asks (always on
//! responses; on chat and legacy completions only when asked, so their usage is otherwise the
//! three classic numbers). Reasoning tokens count in the output tokens, cached tokens in the
//! input tokens.
//!
//! Faults are injected per model ([`MockUpstreamBuilder::model_behavior`], optionally for the
//! first N calls only) or per request with an `x-mock` header ([`Behavior::parse`]): any
//! status with an OpenAI-style error body and `retry-after`, a connection reset before the
//! head, an abort or an in-stream error mid-stream, a slow first byte. They apply to every
//! endpoint alike (stream faults to streams only). What a request can ask for is capped (see
//! [Behavior's caps](Behavior#caps)). Every call is recorded ([`Call`]: path, headers, body,
//! model, and whether the client hung up) for assertions.
//!
//! [`serve`] serves a gateway over HTTP/1.1 with the connection hygiene a public server needs
//! ([`ConnectionLimits`]: header read and idle timeouts, a connection cap answered with a 503
//! envelope, graceful shutdown); [`TestServer`] serves the gateway under test with it on a
//! loopback port, so end-to-end tests run over real TCP, and [`raw_exchange`] sends them bytes
//! no HTTP library would write.
//!
//! For state backends: [`redis`] starts real `redis-server` nodes and clusters on ephemeral
//! ports (stopped when dropped), and `conformance` (feature `conformance`) is the suite every
//! rate-limit backend and ledger must pass, in memory, in Redis or in your own database.
//!
//! ```
//! use tollgate_testkit::{Behavior, MockUpstream};
//!
//! # tokio_test::block_on(async {
//! let upstream = MockUpstream::builder()
//!     .model_behavior_times("flaky", Behavior::status(503), 1)
//!     .start()
//!     .await;
//! assert!(upstream.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(upstream.calls().len(), 0);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod answer;
mod behavior;
mod bodies;
mod chat;
mod client;
mod completions;
#[cfg(feature = "conformance")]
pub mod conformance;
mod connection;
mod embeddings;
mod forward;
mod raw;
mod record;
pub mod redis;
mod responses;
mod self_wake;
mod serve;
mod server;
mod stream;
mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use behavior::{Behavior, BehaviorError, Fault};
pub use bodies::{body_json, body_text, chat_request, post_json};
pub use client::send;
pub use forward::Forward;
pub use raw::{RAW_EXCHANGE_TIMEOUT, RawResponse, raw_exchange, read_response};
pub use record::{Call, Outcome};
pub use serve::{ConnectionLimits, Shutdown, TestServer, accept, serve};
pub use tokens::prompt_tokens;

use server::{ModelRule, State};

/// The reply the mock streams word by word unless configured otherwise.
pub const DEFAULT_REPLY: &str = "Hello from the tollgate mock upstream.";

/// The length of an embedding when the request does not ask for `dimensions`.
pub const EMBEDDING_DIMENSIONS: usize = 8;

/// The longest embedding a request can ask for; larger `dimensions` are clamped to it (and 0
/// to 1).
pub const MAX_EMBEDDING_DIMENSIONS: usize = 256;

/// The most inputs an embeddings request may have, as at OpenAI; more are a 400.
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// A running mock upstream. Stops (and closes its connections) when dropped.
#[derive(Debug)]
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

/// Responses of a [`MockUpstream`] held by [`MockUpstream::hold`]; dropping it lets them go.
#[derive(Debug)]
#[must_use = "responses are held only while this guard lives"]
pub struct HeldResponses {
    _write: tokio::sync::OwnedRwLockWriteGuard<()>,
}

/// Configures a [`MockUpstream`].
#[derive(Debug)]
pub struct MockUpstreamBuilder {
    defaults: Behavior,
    reply: String,
    models: Vec<String>,
    rules: HashMap<String, ModelRule>,
    record_calls: bool,
}

impl MockUpstream {
    /// Starts a mock with the default configuration.
    pub async fn start() -> MockUpstream {
        MockUpstream::builder().start().await
    }

    /// Configures a mock.
    pub fn builder() -> MockUpstreamBuilder {
        MockUpstreamBuilder {
            defaults: Behavior::default(),
            reply: DEFAULT_REPLY.to_owned(),
            models: vec!["gpt-5.4".to_owned(), "gpt-5.4-mini".to_owned()],
            rules: HashMap::new(),
            record_calls: true,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the upstream's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call received so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default()
    }

    /// The calls received for `model`.
    pub fn calls_for(&self, model: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.model.as_deref() == Some(model))
            .collect()
    }

    /// The most recent call, once one arrives (waiting up to `timeout`).
    pub async fn wait_for_call(&self, timeout: Duration) -> Option<Call> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(call) = self.calls().pop() {
                return Some(call);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Holds every response before its head until the returned guard is dropped; calls are
    /// still recorded as they arrive. A test decides all of a burst's requests while none of
    /// them has finished, whatever the machine's speed: no admitted request settles, nor frees
    /// what it holds, until the guard goes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use tollgate_testkit::{MockUpstream, send};
    ///
    /// # tokio_test::block_on(async {
    /// let upstream = MockUpstream::start().await;
    /// let held = upstream.hold().await;
    /// let request = http::Request::get("/v1/models").header("host", "mock").body(Full::new(Bytes::new())).unwrap();
    /// let response = tokio::spawn(send(upstream.addr(), request));
    /// assert!(upstream.wait_for_call(Duration::from_secs(5)).await.is_some());
    /// assert!(!response.is_finished());
    /// drop(held);
    /// assert_eq!(response.await.unwrap().unwrap().status(), 200);
    /// # });
    /// ```
    pub async fn hold(&self) -> HeldResponses {
        HeldResponses {
            _write: self.state.hold.clone().write_owned().await,
        }
    }

    /// Changes how `model` is answered from now on.
    pub fn set_model_behavior(&self, model: &str, behavior: Behavior) {
        if let Ok(mut rules) = self.state.rules.lock() {
            rules.insert(
                model.to_owned(),
                ModelRule {
                    behavior,
                    remaining: None,
                },
            );
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstreamBuilder {
    /// The reply text; its words become the chunks of a stream.
    pub fn reply(mut self, reply: impl Into<String>) -> Self {
        self.reply = reply.into();
        self
    }

    /// The model ids `GET /v1/models` lists.
    pub fn models<I: IntoIterator<Item = S>, S: Into<String>>(mut self, models: I) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Content chunks per stream (reply words are repeated to fill them).
    pub fn chunks(mut self, chunks: usize) -> Self {
        self.defaults.chunks = Some(chunks);
        self
    }

    /// The pause before each content chunk of a stream.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.defaults.chunk_delay = Some(delay);
        self
    }

    /// The pause before every response head.
    pub fn first_byte_delay(mut self, delay: Duration) -> Self {
        self.defaults.first_byte_delay = Some(delay);
        self
    }

    /// How requests for `model` are answered, always.
    pub fn model_behavior(mut self, model: impl Into<String>, behavior: Behavior) -> Self {
        self.rules.insert(
            model.into(),
            ModelRule {
                behavior,
                remaining: None,
            },
        );
        self
    }

    /// How the first `times` requests for `model` are answered; later ones are served normally.
    pub fn model_behavior_times(
        mut self,
        model: impl Into<String>,
        behavior: Behavior,
        times: usize,
    ) -> Self {
        self.rules.insert(
            model.into(),
            ModelRule {
                behavior,
                remaining: Some(times),
            },
        );
        self
    }

    /// Whether every call is kept for [`calls`](MockUpstream::calls) (the default). Off for a
    /// long-running mock (a demo, a load test): then nothing grows with each request, and
    /// `calls` stays empty.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let upstream = tollgate_testkit::MockUpstream::builder().record_calls(false).start().await;
    /// assert!(upstream.calls().is_empty());
    /// # });
    /// ```
    pub fn record_calls(mut self, record: bool) -> Self {
        self.record_calls = record;
        self
    }

    /// Binds an ephemeral loopback port and starts serving on the current Tokio runtime.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(self) -> MockUpstream {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind an ephemeral loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let state = Arc::new(State {
            defaults: self.defaults,
            reply: self.reply,
            models: self.models,
            rules: Mutex::new(self.rules),
            calls: Mutex::new(Vec::new()),
            record_calls: self.record_calls,
            next_id: AtomicU64::new(1),
            hold: Arc::default(),
        });
        let task = tokio::spawn(server::serve(listener, state.clone()));
        MockUpstream { addr, state, task }
    }
}
