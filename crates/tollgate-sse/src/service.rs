use bytes::Bytes;
use http::Request;
use tollgate_core::admission::{Admission, AdmissionFuture, Start, Verdict};
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::{
    BodyArrived, BoxError, ChatRequest, Endpoint, GatewayError, ReadBody, Telemetry,
};
use tower_layer::Layer;

use crate::future::StreamPlan;
use crate::{SseObservers, SsePassthroughLayer};

/// The service of [`SsePassthroughLayer`]; see there.
#[derive(Debug)]
pub struct SsePassthrough<S> {
    inner: S,
    admission: SsePassthroughLayer,
}

impl<S> SsePassthrough<S> {
    /// Streams `inner`'s event streams through with the default settings (see
    /// [`SsePassthroughLayer::new`]).
    pub fn new(inner: S) -> Self {
        SsePassthroughLayer::new().layer(inner)
    }

    /// An [`SsePassthroughLayer`] with the default settings.
    pub fn layer() -> SsePassthroughLayer {
        SsePassthroughLayer::new()
    }
}

tollgate_core::admission_service!(SsePassthrough<S> => SsePassthroughLayer);

/// The response future of [`SsePassthrough`].
pub type ResponseFuture<S, B> = AdmissionFuture<S, SsePassthroughLayer, B>;

impl<B> Admission<B> for SsePassthroughLayer
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Ticket = StreamPlan;
    type Pending = ReadBody<B>;

    fn start(&self, request: &mut Request<B>) -> Start<StreamPlan, ReadBody<B>> {
        // Observers matter only for a stream; a request known not to stream skips them.
        let known_not_streaming = request
            .extensions()
            .get::<ChatRequest>()
            .is_some_and(|chat| !chat.stream());
        if !known_not_streaming {
            request.extensions_mut().insert(SseObservers::default());
        }
        // The body is read as JSON whatever `content-type` says, as the catalog reads it.
        if self.injects_usage(request) {
            return Start::with_body(self, request, self.config.body_limit);
        }
        Start::Decided(Verdict::Admit(self.plan(request, false)))
    }

    fn resume(&self, arrived: BodyArrived, request: &mut Request<B>) -> Verdict<StreamPlan> {
        let parsed = match arrived.parse(request) {
            Ok(parsed) => parsed,
            Err(error) => return Verdict::Reject(GatewayError::from(&error), StreamPlan::none()),
        };
        // A body that is not a valid chat request is the guard's to refuse: passed on as is.
        let inject = parsed.is_ok_and(|chat| {
            let inject = chat.stream() && !chat.include_usage();
            if inject {
                chat.with_include_usage().install(request);
            }
            inject
        });
        Verdict::Admit(self.plan(request, inject))
    }
}

impl SsePassthroughLayer {
    fn plan<B>(&self, request: &Request<B>, strip_usage: bool) -> StreamPlan {
        StreamPlan {
            config: Some(self.config.clone()),
            observers: request.extensions().get::<SseObservers>().cloned(),
            request_id: request.headers().get(X_REQUEST_ID).cloned(),
            strip_usage,
            endpoint: endpoint_of(request),
            telemetry: request.extensions().get::<Telemetry>().cloned(),
        }
    }

    /// Whether `request` gets `stream_options.include_usage` spliced in: a `POST` to one of the
    /// configured paths, unless its endpoint has no such option (the Responses API always
    /// reports usage, and takes no chat option).
    fn injects_usage<B>(&self, request: &Request<B>) -> bool {
        self.config.inject_usage
            && self.config.paths.is_post_to(request)
            && !matches!(
                endpoint_of(request),
                Some(Endpoint::Responses | Endpoint::Embeddings)
            )
    }
}

/// The endpoint the routing layer put in the extensions, else the one the path names (a stack
/// without a routing layer).
fn endpoint_of<B>(request: &Request<B>) -> Option<Endpoint> {
    request
        .extensions()
        .get::<Endpoint>()
        .copied()
        .or_else(|| Endpoint::from_path(request.uri().path()))
}
