//! The shared vocabulary of [tollgate](https://docs.rs/tollgate): every layer crate depends on
//! this one, and on no other layer.
//!
//! - [`ErrorKind`] and [`GatewayError`]: every error the gateway returns and its one JSON
//!   envelope, `{"error":{"message","type","param","code","details"?},"request_id"?}`.
//! - [`ChatRequest`]: the light view of a chat/completions body, parsed once per request and
//!   memoized in the request extensions by [`buffer_chat_request`], which reads the body under a
//!   byte limit.
//! - [`Principal`]: the authenticated caller, [`Rate`], a quota, and [`SpendCap`], the most
//!   a key may spend per day, week, month or rolling period.
//! - [`ModelInfo`]: the model the catalog resolved (id, context window, max output,
//!   [`Prices`], [`Lifecycle`]).
//! - [`Usage`]: token usage as OpenAI reports it, cached prompt and reasoning tokens included.
//! - [`request_id()`]: the id tower-http's request-id layer set.
//! - [`Telemetry`]: what the layers learn about one request, for a metrics layer to report,
//!   and its W3C [`TraceContext`].
//! - [`Body`] and [`ResponseBody`]: body types shared by the layers.
//! - [`timer::WaitTimer`]: a deadline checked on each of many waits (a streamed body's, a
//!   connection's reads).
//!
//! Layers talk to each other only through these types in the request and response extensions.
//!
//! ```
//! use http::Request;
//! use tollgate_core::{Body, BodyLimit, ErrorKind, GatewayError, buffer_chat_request};
//!
//! # tokio_test::block_on(async {
//! let request = Request::new(Body::from(r#"{"model": 42, "messages": []}"#));
//! let (_request, chat) = buffer_chat_request(request, BodyLimit::default()).await.unwrap();
//! let chat = chat.unwrap();
//! if chat.model().is_none() {
//!     let response = GatewayError::new(ErrorKind::InvalidRequest, "`model` must be a string.")
//!         .param("model")
//!         .into_response();
//!     assert_eq!(response.status(), 400);
//! }
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

pub mod admission;
pub mod body;
mod buffer;
pub mod chat;
mod endpoint;
pub mod error;
mod estimate;
pub mod extensions;
mod header;
pub mod model;
mod paths;
mod principal;
pub mod request_id;
pub mod spend;
mod telemetry;
pub mod timer;
pub mod trace_context;
mod usage;

pub use body::{Body, BoxError, ResponseBody};
pub use buffer::{
    BodyArrived, BodyLimit, BufferRequest, Buffered, DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT,
    ReadBody, buffer_chat_request, read_body,
};
pub use chat::{ChatRequest, Field, ParseError};
pub use endpoint::Endpoint;
pub use error::{ErrorKind, GatewayError};
pub use estimate::TokenEstimate;
pub use header::{RESPONSE_HEADER_ROOM, number_value};
pub use model::{
    Date, Fallbacks, InvalidDate, Lifecycle, ModelInfo, Prices, PromptTokens, X_MODEL,
};
pub use paths::{Paths, is_event_stream};
pub use principal::{InvalidRate, Principal, Rate};
pub use request_id::request_id;
pub use spend::{CapPeriod, CapWindow, InvalidSpendCap, SpendCap};
pub use telemetry::{Recorded, Telemetry};
pub use trace_context::{SpanId, TraceContext, TraceId};
pub use usage::Usage;
