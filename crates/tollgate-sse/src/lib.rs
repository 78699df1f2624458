//! SSE passthrough for LLM gateways: every frame forwarded as it arrives, usage still seen.
//!
//! - [`SseParser`]: an incremental parser for the HTML event-stream format (multi-line `data`,
//!   `event`, `id`, `retry`, comments, CRLF / CR / LF, a leading BOM, events split across any
//!   chunk boundary), borrowing from the input where it can and allocating nothing per chunk
//!   in steady state.
//! - [`SsePassthroughLayer`] and its body [`SseBody`]: frames forwarded as they arrive,
//!   observers fed from one parse, a terminal error event on upstream failure, keep-alive
//!   comments, usage injection and stripping, cancel or drain on client disconnect.
//! - [`SseObserver`], [`SseObservers`] and [`ChatStreamSummary`]: watch a stream's usage
//!   chunk, finish reasons and `[DONE]`.
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
