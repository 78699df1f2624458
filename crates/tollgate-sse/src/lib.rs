//! SSE passthrough for LLM gateways: every frame forwarded as it arrives, usage still seen.
//!
//! - [`SseParser`]: an incremental parser for the HTML event-stream format (multi-line `data`,
//!   `event`, `id`, `retry`, comments, CRLF / CR / LF, a leading BOM, events split across any
//!   chunk boundary), borrowing from the input where it can and allocating nothing per chunk
//!   in steady state.
//! - [`SsePassthroughLayer`] and its body [`SseBody`]: the passthrough (below).
//! - [`SseObserver`], [`SseObservers`] and [`ChatStreamSummary`]: watch a stream's usage
//!   chunk, finish reasons and `[DONE]`.
//!
//! # What `SsePassthroughLayer` does
//!
//! Streams `text/event-stream` responses through as they arrive, while observers see the
//! parsed events; leaves other responses untouched.
//!
//! - Every upstream frame is forwarded as soon as it arrives: never coalesced, never held for
//!   an event boundary (except, in usage-stripping mode, the events of the one stream whose
//!   usage chunk is removed, which are forwarded whole as each completes).
//! - Observers registered by inner layers through [`SseObservers`] (the
//!   balance gate's, your own) run on one parse of the stream.
//! - An upstream failure mid-stream becomes one terminal event in the endpoint's shape, then a
//!   clean end (see [`SseBody`]): `data: {"error":{...}}` carrying the gateway's error envelope,
//!   or for the Responses API (the routed [`Endpoint`](tollgate_core::Endpoint), else the
//!   path) `event: error` with `{"type":"error","code",...,"sequence_number"}` numbered after
//!   the upstream's last event.
//! - After a quiet period (15 s by default) a `: keep-alive` comment is sent, at event
//!   boundaries only.
//! - Response headers: `content-type: text/event-stream` kept, `cache-control: no-cache`,
//!   `x-accel-buffering: no`, and no `content-length`.
//! - With [`inject_usage`](SsePassthroughLayer::inject_usage), a streaming chat request
//!   without `stream_options.include_usage` gets it spliced in, and the usage-only chunk is
//!   removed from the client's stream: accounting always sees usage, the client sees what it
//!   asked for. A Responses API request is never spliced (its stream always ends with its
//!   usage), whatever the configured paths.
//! - When the client goes away the upstream body is dropped (the upstream request is
//!   cancelled); with [`drain_on_disconnect`](SsePassthroughLayer::drain_on_disconnect) it is
//!   read to its end on a task instead, so observers still see usage.
//!
//! ```
//! use std::convert::Infallible;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tollgate_core::Body;
//! use tollgate_sse::{ChatStreamSummary, SseObserver, SseObservers, SsePassthroughLayer, StreamEnd};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! /// Logs the usage of every stream.
//! struct LogUsage(ChatStreamSummary);
//!
//! impl SseObserver for LogUsage {
//!     fn on_event(&mut self, event: &tollgate_sse::Event<'_>) {
//!         self.0.observe(event);
//!     }
//!     fn on_end(&mut self, end: StreamEnd) {
//!         tracing::info!(usage = ?self.0.usage, ?end, "stream finished");
//!     }
//! }
//!
//! # tokio_test::block_on(async {
//! let service = ServiceBuilder::new()
//!     .layer(SsePassthroughLayer::new())
//!     .service_fn(|request: Request<Body>| async move {
//!         // An inner layer registers its observer for this request's stream.
//!         request.extensions().get::<SseObservers>().unwrap().register(LogUsage(ChatStreamSummary::default()));
//!         let response = http::Response::builder()
//!             .header("content-type", "text/event-stream")
//!             .body(Body::from("data: {\"choices\":[]}\n\ndata: [DONE]\n\n"))
//!             .unwrap();
//!         Ok::<_, Infallible>(response)
//!     });
//! let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
//! assert_eq!(response.headers()["cache-control"], "no-cache");
//! assert_eq!(response.headers()["x-accel-buffering"], "no");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert!(body.ends_with(b"data: [DONE]\n\n"));
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod body;
mod chunk;
mod future;
mod layer;
mod observer;
mod parser;
mod service;

pub use body::SseBody;
pub use layer::SsePassthroughLayer;
pub use observer::{ChatStreamSummary, SseObserver, SseObservers, StreamEnd};
pub use parser::{Event, SseParser};
pub use service::{ResponseFuture, SsePassthrough};
