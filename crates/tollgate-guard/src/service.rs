use tollgate_core::admission::AdmissionFuture;
use tower_layer::Layer;

use crate::RequestGuardLayer;

/// The service of [`RequestGuardLayer`]; see the [crate docs](crate).
#[derive(Debug)]
pub struct RequestGuard<S> {
    inner: S,
    admission: RequestGuardLayer,
}

impl<S> RequestGuard<S> {
    /// Guards `inner` with the default limits (see [`RequestGuardLayer::new`]).
    pub fn new(inner: S) -> Self {
        RequestGuardLayer::new().layer(inner)
    }

    /// A [`RequestGuardLayer`] with the default limits.
    pub fn layer() -> RequestGuardLayer {
        RequestGuardLayer::new()
    }
}

tollgate_core::admission_service!(RequestGuard<S> => RequestGuardLayer);

/// The response future of [`RequestGuard`].
pub type ResponseFuture<S, B> = AdmissionFuture<S, RequestGuardLayer, B>;
