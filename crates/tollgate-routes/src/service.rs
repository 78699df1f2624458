use std::future::Ready;

use http::{Method, Request};
use tollgate_core::admission::{Admission, AdmissionFuture, Start, Verdict};
use tollgate_core::{Endpoint, GatewayError};
use tower_layer::Layer;

use crate::KnownRoutesLayer;
use crate::layer::Routes;

/// The service of [`KnownRoutesLayer`]; see the [crate documentation](crate).
#[derive(Debug)]
pub struct KnownRoutes<S> {
    inner: S,
    admission: KnownRoutesLayer,
}

impl<S> KnownRoutes<S> {
    /// Lets every metered endpoint and the model listing through to `inner`.
    pub fn new(inner: S) -> Self {
        KnownRoutesLayer::new().layer(inner)
    }

    /// A [`KnownRoutesLayer`] with every metered endpoint.
    pub fn layer() -> KnownRoutesLayer {
        KnownRoutesLayer::new()
    }
}

tollgate_core::admission_service!(KnownRoutes<S> => KnownRoutesLayer);

/// The response future of [`KnownRoutes`].
pub type ResponseFuture<S, B> = AdmissionFuture<S, KnownRoutesLayer, B>;

const MODELS: &str = "/v1/models";

impl<B> Admission<B> for KnownRoutesLayer {
    type Ticket = ();
    type Pending = Ready<Verdict<()>>;

    fn start(&self, request: &mut Request<B>) -> Start<(), Self::Pending> {
        let verdict = match self.routes.route(request.method(), request.uri().path()) {
            Ok(Some(endpoint)) => {
                request.extensions_mut().insert(endpoint);
                Verdict::Admit(())
            }
            Ok(None) => Verdict::Admit(()),
            Err(error) => Verdict::Reject(error, ()),
        };
        Start::Decided(verdict)
    }

    fn resume(&self, verdict: Verdict<()>, _: &mut Request<B>) -> Verdict<()> {
        verdict
    }
}

impl Routes {
    /// `Ok(Some(endpoint))` for a metered endpoint, `Ok(None)` for the listing or a
    /// passthrough, the 405 or 404 otherwise.
    fn route(&self, method: &Method, path: &str) -> Result<Option<Endpoint>, GatewayError> {
        if let Some(endpoint) = Endpoint::from_path(path).filter(|e| self.endpoints.contains(e)) {
            return if method == Method::POST {
                Ok(Some(endpoint))
            } else {
                Err(GatewayError::method_not_allowed(
                    method,
                    path,
                    &[Method::POST],
                ))
            };
        }
        if is_model_listing(path) {
            return if method == Method::GET || method == Method::HEAD {
                Ok(None)
            } else {
                let allowed = [Method::GET, Method::HEAD];
                Err(GatewayError::method_not_allowed(method, path, &allowed))
            };
        }
        let listed: Vec<&Method> = self
            .passthrough
            .iter()
            .filter(|(_, listed)| **listed == *path)
            .map(|(method, _)| method)
            .collect();
        if listed.contains(&method) {
            Ok(None)
        } else if listed.is_empty() {
            Err(GatewayError::unknown_route(method, path))
        } else {
            let allowed: Vec<Method> = listed.into_iter().cloned().collect();
            Err(GatewayError::method_not_allowed(method, path, &allowed))
        }
    }
}

/// `/v1/models`, or `/v1/models/{id}` with an id of non-empty segments (`provider/model`).
fn is_model_listing(path: &str) -> bool {
    match path.strip_prefix(MODELS) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('/').is_some_and(|id| {
            !id.is_empty()
                && id
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != "..")
        }),
        None => false,
    }
}
