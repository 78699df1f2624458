//! What the mock received, for assertions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::sync::watch;

/// How a call ended, from the mock's side of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response is still being produced.
    InProgress,
    /// The whole response was handed to the connection.
    Completed,
    /// The client went away before the response was complete.
    ClientHungUp,
    /// The mock injected a reset, an abort, or an error event in the stream.
    Faulted,
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The request method.
    pub method: Method,
    /// The request path.
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
    /// The `model` of the body, when it has one.
    pub model: Option<String>,
    pub(crate) progress: Arc<Progress>,
}

#[derive(Debug)]
pub(crate) struct Progress {
    outcome: watch::Sender<Outcome>,
    frames_sent: Mutex<Vec<Instant>>,
}

impl Progress {
    pub(crate) fn new() -> Arc<Progress> {
        Arc::new(Progress {
            outcome: watch::Sender::new(Outcome::InProgress),
            frames_sent: Mutex::new(Vec::new()),
        })
    }

    /// Records the end of the call; the first outcome recorded wins.
    pub(crate) fn finish(&self, outcome: Outcome) {
        self.outcome.send_if_modified(|current| {
            let first = *current == Outcome::InProgress;
            if first {
                *current = outcome;
            }
            first
        });
    }

    pub(crate) fn frame_sent(&self) {
        if let Ok(mut sent) = self.frames_sent.lock() {
            sent.push(Instant::now());
        }
    }
}

/// Marks the call `ClientHungUp` if it is dropped (the connection went away) before the
/// response was complete.
pub(crate) struct HangUpGuard(pub(crate) Arc<Progress>);

impl Drop for HangUpGuard {
    fn drop(&mut self) {
        self.0.finish(Outcome::ClientHungUp);
    }
}

impl Call {
    /// How the call has ended so far.
    pub fn outcome(&self) -> Outcome {
        *self.progress.outcome.borrow()
    }

    /// Whether the client went away before the response was complete.
    pub fn client_hung_up(&self) -> bool {
        self.outcome() == Outcome::ClientHungUp
    }

    /// Waits until the call has ended (or `timeout` passed) and returns its outcome.
    pub async fn wait_outcome(&self, timeout: Duration) -> Outcome {
        let mut outcome = self.progress.outcome.subscribe();
        let ended = outcome.wait_for(|outcome| *outcome != Outcome::InProgress);
        let _ = tokio::time::timeout(timeout, ended).await;
        self.outcome()
    }

    /// When each body frame of a stream was handed to the connection.
    pub fn frames_sent_at(&self) -> Vec<Instant> {
        self.progress
            .frames_sent
            .lock()
            .map(|sent| sent.clone())
            .unwrap_or_default()
    }

    /// A request header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}
