use std::sync::Arc;
use tower_layer::Layer;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use tollgate_core::admission::{Admission, AdmissionFuture, Respond, Start, Verdict};
use tollgate_core::{
    BodyArrived, BoxError, GatewayError, Principal, ReadBody, ResponseBody, Telemetry,
};

use crate::decide::decide;
use crate::{ModelCatalog, ModelResolutionLayer};

/// The service of [`ModelResolutionLayer`]; see there.
#[derive(Debug)]
pub struct ModelResolution<S> {
    inner: S,
    admission: ModelResolutionLayer,
}

impl<S> ModelResolution<S> {
    /// Validates the models of `inner`'s requests against `catalog`.
    pub fn new(inner: S, catalog: ModelCatalog) -> Self {
        ModelResolutionLayer::new(catalog).layer(inner)
    }

    /// A [`ModelResolutionLayer`] for `catalog`.
    pub fn layer(catalog: ModelCatalog) -> ModelResolutionLayer {
        ModelResolutionLayer::new(catalog)
    }
}

tollgate_core::admission_service!(ModelResolution<S> => ModelResolutionLayer);

/// The response future of [`ModelResolution`].
pub type ResponseFuture<S, B> = AdmissionFuture<S, ModelResolutionLayer, B>;

impl<B> Admission<B> for ModelResolutionLayer
where
    B: http_body::Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Ticket = ModelHeaders;
    type Pending = ReadBody<B>;

    fn start(&self, request: &mut Request<B>) -> Start<ModelHeaders, ReadBody<B>> {
        // The body is read as JSON whatever `content-type` declares (curl's default form type
        // included), so no declared type can slip a request past the catalog: a body that is
        // not JSON is a 400.
        if !self.shared.catalog.snapshot().endpoints.is_post_to(request) {
            return Start::Decided(Verdict::Admit(ModelHeaders(None)));
        }
        Start::with_body(self, request, self.shared.body_limit)
    }

    fn resume(&self, arrived: BodyArrived, request: &mut Request<B>) -> Verdict<ModelHeaders> {
        let chat = match arrived.chat(request) {
            Ok(chat) => chat,
            Err(error) => return Verdict::Reject(error, ModelHeaders(None)),
        };
        let endpoint = request.uri().path();
        let principal = request.extensions().get::<Principal>();
        let snapshot = self.shared.catalog.snapshot();
        let telemetry = request.extensions().get::<Telemetry>();
        let admitted = match decide(&snapshot.catalog, &chat, endpoint, principal) {
            Ok(admitted) => admitted,
            Err(error) => {
                // A refused model the catalog knows (retired, not allowed) is a bounded label.
                if let Some(telemetry) = telemetry
                    && let Some(model) = chat.model().and_then(|m| snapshot.catalog.named(m))
                {
                    telemetry.set_requested_model(model.info.id.clone());
                }
                return Verdict::Reject(error, ModelHeaders(None));
            }
        };
        let model = admitted.model;
        if let Some(telemetry) = telemetry {
            telemetry.set_requested_model(model.info.id.clone());
        }
        if admitted.via_alias
            && let Some(rewritten) = chat.with_model(model.id())
        {
            rewritten.install(request);
        }
        let extensions = request.extensions_mut();
        extensions.insert(model.info.clone());
        if !admitted.fallbacks.0.is_empty() {
            extensions.insert(admitted.fallbacks);
        }
        Verdict::Admit(ModelHeaders(Some(model.headers.clone())))
    }
}

/// The headers of the model that serves a request (rendered once, when the catalog was
/// built): `x-tollgate-model`, and `Deprecation`, `Sunset`, `Link` for a deprecated model.
#[derive(Debug)]
pub struct ModelHeaders(Option<Arc<[(HeaderName, HeaderValue)]>>);

impl<B> Respond<B> for ModelHeaders {
    type Body = ResponseBody<B>;

    fn admitted(self, mut response: Response<B>) -> Response<ResponseBody<B>> {
        let headers = response.headers_mut();
        // An inner layer's value wins: a fallback names the model that really answered.
        for (name, value) in self.0.iter().flat_map(|headers| headers.iter()) {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        response.map(ResponseBody::inner)
    }

    fn rejected(self, error: GatewayError) -> Response<ResponseBody<B>> {
        error.into_response().map(ResponseBody::from)
    }
}
