//! `MetricsLayer`: an LLM gateway's metrics, in OpenTelemetry's GenAI vocabulary, through the
//! [`metrics`] facade, so any of its exporters (Prometheus, OpenTelemetry, StatsD, ...)
//! receives them.
//!
//! Per request, once its response body has ended (or the client went away):
//!
//! | name | kind | unit | attributes |
//! |---|---|---|---|
//! | `gen_ai.server.request.duration` | histogram | s | outcome |
//! | `tollgate.server.time_to_response_head` | histogram | s | outcome |
//! | `tollgate.requests` | counter | requests | outcome |
//! | `gen_ai.server.time_to_first_token` | histogram | s | models (streams) |
//! | `gen_ai.server.time_per_output_token` | histogram | s | models (streams that ended well) |
//! | `gen_ai.client.token.usage` | histogram | tokens | models, `gen_ai.token.type` (`input`, `output`) |
//! | `tollgate.tokens.cached`, `tollgate.tokens.reasoning` | counter | tokens | models |
//! | `tollgate.cost` | counter | micro-units | models |
//! | `tollgate.upstream.attempts`, `.retries`, `.fallbacks` | counter | requests | models |
//! | `tollgate.server.overhead` | histogram | s | route |
//! | `tollgate.server.active_requests`, `.active_streams` | gauge | requests | route |
//! | `tollgate.ratelimit.remaining` | gauge | requests | `tollgate.key.id` (key labels on) |
//! | `tollgate.balance.unreserved` | gauge | micro-units | `tollgate.account.id` (account labels on) |
//!
//! - route: `gen_ai.operation.name` (`chat`, `text_completion`, `embeddings`) and `http.route`
//!   (the metered endpoint, `/v1/models`, or `other`: never a raw path);
//! - models: route, `gen_ai.request.model` (the catalog's id of the model asked for; empty
//!   when the catalog does not know it, so clients cannot invent label values),
//!   `gen_ai.response.model` (the model that answered, a fallback's after a fallback), and
//!   with [`key_labels`](MetricsLayer::key_labels) / [`account_labels`](MetricsLayer::account_labels)
//!   `tollgate.key.id` / `tollgate.account.id`;
//! - outcome: models, `http.response.status_code` and `error.type` (the error envelope's type,
//!   a failed stream's terminal error, `cancelled` when the client left before the end).
//!
//! The layers below report what only they know through the request's
//! [`Telemetry`](tollgate_core::Telemetry), which this layer puts in the request extensions:
//! the caller (auth), the model asked for (catalog), headroom (rate limit, balance), usage and
//! cost (balance gate), a failed stream (SSE), attempts and the time waiting on the provider
//! (upstream). The telemetry also carries the W3C trace context, continued from the client's
//! `traceparent` and sent on to the provider. Inside tollgate's trace layer, the request span
//! gets `trace_id`, `endpoint`, `account`, `request_model`, `response_model`, `input_tokens`,
//! `output_tokens`, `cost` and `error_type`.
//!
//! Handles are registered once per label set, on its first request, and kept: recording is
//! then a few atomic operations. Install the recorder before the first request, or give one to
//! [`MetricsLayer::recorder`].
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use tollgate_core::Body;
//! use tollgate_metrics::MetricsLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let recorder = PrometheusBuilder::new().build_recorder();
//! let scrape = recorder.handle();
//! let service = ServiceBuilder::new()
//!     .layer(MetricsLayer::new().recorder(recorder))
//!     .service_fn(|_request: Request<Body>| async {
//!         Ok::<_, Infallible>(Response::new(Body::from("{}")))
//!     });
//! let request = Request::post("/v1/embeddings").body(Body::empty()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! drop(response);
//! let text = scrape.render();
//! assert!(text.contains(r#"tollgate_requests{gen_ai_operation_name="embeddings",http_route="/v1/embeddings""#));
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod body;
pub mod buckets;
mod future;
mod layer;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod record;
mod scrape;
mod series;
mod service;
mod text;

pub use body::MetricsBody;
pub use future::ResponseFuture;
pub use layer::MetricsLayer;
pub use scrape::Scrape;
pub use series::{attributes, names};
pub use service::Metrics;
pub use text::TextRecorder;
