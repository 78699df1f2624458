//! `RequestGuardLayer`: request size limit, request validation and context-window guard.
//!
//! Put it after the model catalog's layer, so the resolved model's context window and max
//! output apply; without a resolved model it uses the configured fallback window, or skips
//! the window check when none is set. It guards `POST /v1/chat/completions` unless
//! [`paths`](RequestGuardLayer::paths) says otherwise.
//!
//! - Size: a `Content-Length` over the limit is a 413 `request_too_large` before a byte of
//!   the body is read; a chunked body stops being read at the frame that crosses the limit;
//!   a body slower than the read timeout is a 408 `request_timeout`.
//! - Validation, each a 400 `invalid_request_error` naming the `param`: invalid JSON (line and
//!   column), a body that is not an object, `messages` missing / not an array / empty, a
//!   message that is not an object, has no or an unknown `role`, or no `content` (an assistant
//!   message with `tool_calls` may have none; content is a string or an array of parts),
//!   `temperature` outside 0–2, `top_p` outside 0–1, `max_tokens` / `max_completion_tokens` not
//!   a positive integer, `n` outside 1–128, penalties outside −2–2, `stream` not a boolean;
//!   a strict mode rejects unknown top-level fields.
//! - Context window: prompt tokens plus the completion budget (`max_completion_tokens`, else
//!   `max_tokens`, else the model's max output) over the window is a 413 with code
//!   `context_length_exceeded`. The prompt is tokenized only when the byte bound (bytes of
//!   text plus per-message overhead: a byte-level BPE never makes more tokens than bytes)
//!   cannot decide; the count (exact, or the bound) goes into the request extensions as
//!   [`PromptTokens`](tollgate_core::PromptTokens).
//!
//! Exact counts use [bpe-openai](https://docs.rs/bpe-openai) (`o200k_base` or `cl100k_base`
//! by model family, with OpenAI's per-message overhead), measured faster than tiktoken-rs with
//! identical counts.
//!
//! ```
//! use std::convert::Infallible;
//! use http::Request;
//! use tollgate_core::{Body, ModelInfo, PromptTokens};
//! use tollgate_guard::RequestGuardLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let service = ServiceBuilder::new()
//!     .layer(RequestGuardLayer::new().fallback_window(8_192, 1_024))
//!     .service_fn(|request: Request<Body>| async move {
//!         let tokens = request.extensions().get::<PromptTokens>().copied().unwrap();
//!         Ok::<_, Infallible>(http::Response::new(Body::from(tokens.value().to_string())))
//!     });
//!
//! let ok = r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"Hi"}]}"#;
//! let response = service.clone().oneshot(Request::post("/v1/chat/completions").body(Body::from(ok)).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 200);
//!
//! let hot = r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"Hi"}],"temperature":3}"#;
//! let response = service.oneshot(Request::post("/v1/chat/completions").body(Body::from(hot)).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 400);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod check;
mod layer;
mod service;
mod tokens;
mod validate;

pub use layer::RequestGuardLayer;
pub use service::{RequestGuard, ResponseFuture};
pub use tokens::{Encoding, count_prompt, prompt_bound};
