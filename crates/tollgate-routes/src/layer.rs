use std::sync::Arc;

use http::Method;
use tollgate_core::Endpoint;

/// Lets through only the routes the stack meters or the operator listed; see the
/// [crate documentation](crate) for what it answers to everything else.
///
/// ```
/// use http::Method;
/// use tollgate_core::Endpoint;
/// use tollgate_routes::KnownRoutesLayer;
///
/// let layer = KnownRoutesLayer::new()
///     .endpoints([Endpoint::ChatCompletions, Endpoint::Embeddings])
///     .passthrough(Method::GET, "/v1/organization/usage");
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct KnownRoutesLayer {
    pub(crate) routes: Arc<Routes>,
}

#[derive(Debug)]
pub(crate) struct Routes {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) passthrough: Vec<(Method, Box<str>)>,
}

impl Default for KnownRoutesLayer {
    fn default() -> Self {
        KnownRoutesLayer::new()
    }
}

impl KnownRoutesLayer {
    /// Every metered [`Endpoint`] and the model listing; nothing passes through.
    pub fn new() -> Self {
        KnownRoutesLayer {
            routes: Arc::new(Routes {
                endpoints: Endpoint::ALL.to_vec(),
                passthrough: Vec::new(),
            }),
        }
    }

    /// Serves only these metered endpoints; the others are 404s like any unknown path.
    pub fn endpoints(self, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        let endpoints = endpoints.into_iter().collect();
        self.with_routes(|routes| routes.endpoints = endpoints)
    }

    /// Also lets `method` requests to exactly `path` through, unmetered (off by default).
    pub fn passthrough(self, method: Method, path: impl Into<Box<str>>) -> Self {
        let path = path.into();
        self.with_routes(|routes| routes.passthrough.push((method, path)))
    }

    fn with_routes(self, change: impl FnOnce(&mut Routes)) -> Self {
        let mut routes = Routes {
            endpoints: self.routes.endpoints.clone(),
            passthrough: self.routes.passthrough.clone(),
        };
        change(&mut routes);
        KnownRoutesLayer {
            routes: Arc::new(routes),
        }
    }
}
