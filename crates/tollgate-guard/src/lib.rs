//! `RequestGuardLayer`: request size limit, request validation and context-window guard.
//!
//! Put it after the model catalog's layer, so the resolved model's context window and max
//! output apply; without a resolved model it uses the configured fallback window, or skips
//! the window check when none is set. It guards `POST` to every metered endpoint (chat
//! completions, responses, legacy completions, embeddings) unless
//! [`paths`](RequestGuardLayer::paths) says otherwise, and holds each request to its
//! endpoint's rules: the [`Endpoint`](tollgate_core::Endpoint) the routing layer put in the
//! request extensions, else the one at the request's path; a guarded path that is no
//! endpoint's gets chat completions' rules.
//!
//! - Size: a `Content-Length` over the limit is a 413 `request_too_large` before a byte of
//!   the body is read; a chunked body stops being read at the frame that crosses the limit;
//!   a body slower than the read timeout is a 408 `request_timeout`.
//! - Validation, each a 400 `invalid_request_error` naming the `param`, on every endpoint:
//!   invalid JSON (line and column), a body that is not an object, and in strict mode a
//!   top-level field that is not one of the endpoint's.
//!   - Chat completions: `messages` missing / not an array / empty, a message that is not an
//!     object, has no or an unknown `role`, or no `content` (an assistant message with
//!     `tool_calls` may have none; content is a string or an array of parts), `temperature`
//!     outside 0–2, `top_p` outside 0–1, `max_tokens` / `max_completion_tokens` not a positive
//!     integer, `n` outside 1–128, penalties outside −2–2, `stream` not a boolean.
//!   - Responses: `input` missing, or neither a string nor an array of input items (objects);
//!     `instructions` not a string; `max_output_tokens` not an integer of at least 16 (code
//!     `integer_below_min_value`); `temperature`, `top_p` and `stream` as in chat.
//!   - Embeddings: `input` missing, empty, or not a string, an array of strings, an array of
//!     token ids or an array of token-id arrays (every item of the first one's kind); an empty
//!     item; more than 2048 items (code `array_above_max_length`); `dimensions` not a positive
//!     integer; `encoding_format` neither `float` nor `base64`.
//!   - Legacy completions: `prompt` missing, an empty array, or of embeddings' shapes but
//!     mixed; `max_tokens` not a positive integer; `best_of` outside 1–20 or below `n`;
//!     sampling parameters, `n` and `stream` as in chat.
//! - Context window, a 413 with code `context_length_exceeded` naming the `param`:
//!   - Chat completions: the messages plus the completion budget (`max_completion_tokens`,
//!     else `max_tokens`, else the model's max output) over the window.
//!   - Responses: `instructions` and `input` plus `max_output_tokens` (else the model's max
//!     output) over the window (`param: input`).
//!   - Embeddings: any one input over the window (`param: input[3]`, or `input`): each is
//!     embedded on its own, so they are not added up.
//!   - Legacy completions: any one prompt of a batch plus `max_tokens` (else 16, OpenAI's
//!     default) over the window (`param: prompt[1]`, or `prompt`).
//!
//!   The prompt is tokenized only when the byte bound (bytes of text plus per-message
//!   overhead: a byte-level BPE never makes more tokens than bytes) cannot decide; token ids
//!   count exactly, without the tokenizer. The count (exact, or the bound) goes into the
//!   request extensions as [`PromptTokens`](tollgate_core::PromptTokens) for the rate
//!   limiter and the balance gate: exact when every part of the prompt was counted.
//! - A Responses request that continues a stored conversation (`previous_response_id` or
//!   `conversation`) or names a stored `prompt` is read with text the body does not show, so
//!   its prompt cannot be bounded from the body: once its visible prompt passes the window
//!   check, its prompt tokens are the whole context window less the output budget
//!   (`PromptTokens::AtMost`), and the rate limiter and the balance gate reserve for that
//!   worst case; settlement charges what was used. Without a known window, the visible
//!   prompt's bound is all there is.
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
//! let response = service.clone().oneshot(Request::post("/v1/chat/completions").body(Body::from(hot)).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 400);
//!
//! let short = r#"{"model":"gpt-5.4","input":"Hi","max_output_tokens":5}"#;
//! let response = service.oneshot(Request::post("/v1/responses").body(Body::from(short)).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 400);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod check;
mod completions;
mod embeddings;
mod inputs;
mod layer;
mod responses;
mod service;
mod tokens;
mod validate;

pub use layer::RequestGuardLayer;
pub use service::{RequestGuard, ResponseFuture};
pub use tokens::{Encoding, count_prompt, prompt_bound};
