use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH};
use http::{HeaderName, HeaderValue, Response};
use tollgate_core::admission::Respond;
use tollgate_core::{BoxError, Endpoint, GatewayError, Telemetry, is_event_stream};

use crate::layer::Config;
use crate::{SseBody, SseObservers};

/// What the response side of [`SsePassthrough`](crate::SsePassthrough) needs from the request
/// side: how to stream, who observes, whether usage was injected (and so is stripped), and the
/// endpoint, whose shape a failure mid-stream is reported in.
#[derive(Debug)]
pub struct StreamPlan {
    pub(crate) config: Option<Arc<Config>>,
    pub(crate) observers: Option<SseObservers>,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) strip_usage: bool,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) telemetry: Option<Telemetry>,
}

impl StreamPlan {
    /// For a request refused before it was planned.
    pub(crate) fn none() -> Self {
        StreamPlan {
            config: None,
            observers: None,
            request_id: None,
            strip_usage: false,
            endpoint: None,
            telemetry: None,
        }
    }
}

impl<B> Respond<B> for StreamPlan
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Body = SseBody<B>;

    fn admitted(self, response: Response<B>) -> Response<SseBody<B>> {
        let Some(config) = self.config.filter(|_| is_event_stream(response.headers())) else {
            return response.map(SseBody::passthrough);
        };
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        parts
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        parts.headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        let observers = self.observers.map(|o| o.take()).unwrap_or_default();
        let mut body = SseBody::stream(
            body,
            observers,
            config.keep_alive,
            self.strip_usage,
            self.request_id,
        );
        if config.drain_on_disconnect {
            body = body.drain_on_disconnect();
        }
        if let Some(endpoint) = self.endpoint {
            body = body.with_endpoint(endpoint);
        }
        if let Some(telemetry) = self.telemetry {
            body = body.with_telemetry(telemetry);
        }
        Response::from_parts(parts, body)
    }

    fn rejected(self, error: GatewayError) -> Response<SseBody<B>> {
        error.into_response().map(SseBody::rendered)
    }
}
