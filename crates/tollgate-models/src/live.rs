//! A catalog that can be replaced while serving.

use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use tollgate_core::Paths;

use crate::ModelCatalog;

/// OpenAI endpoints whose JSON body names a model; the catalog's own endpoints are added.
const MODEL_ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/images/variations",
    "/v1/audio/speech",
];

/// A [`ModelCatalog`] that can be replaced while the gateway serves, shared by
/// [`ModelResolutionLayer`](crate::ModelResolutionLayer) and [`ListModels`](crate::ListModels).
///
/// A replacement is atomic: each request decides on the one catalog it read, whole, and keeps
/// what it resolved (its `ModelInfo`) to the end, so a request in flight finishes as it
/// started. Reads take no lock. A catalog is validated when it is built
/// ([`ModelCatalog::from_toml`] and its siblings return every error), so a bad file never
/// reaches [`replace`](LiveCatalog::replace).
///
/// ```
/// use tollgate_models::{LiveCatalog, ModelCatalog};
///
/// let catalog = |id: &str| {
///     let json = format!(r#"{{"models": [{{"id": "{id}", "context_window": 400000, "max_output_tokens": 128000}}]}}"#);
///     ModelCatalog::from_json(&json).unwrap()
/// };
/// let live = LiveCatalog::new(catalog("gpt-5.4"));
/// let reader = live.clone();
/// live.replace(catalog("gpt-5.5"));
/// assert!(reader.current().get("gpt-5.5").is_some());
/// assert!(reader.current().get("gpt-5.4").is_none());
/// ```
#[derive(Clone)]
pub struct LiveCatalog {
    current: Arc<ArcSwap<Snapshot>>,
}

/// One catalog, with what is derived from it once.
pub(crate) struct Snapshot {
    pub(crate) catalog: ModelCatalog,
    /// The paths whose bodies name a model.
    pub(crate) endpoints: Paths,
    /// `GET /v1/models` for a caller allowed every model.
    pub(crate) listing: Bytes,
}

impl Snapshot {
    fn new(catalog: ModelCatalog) -> Self {
        let mut endpoints: Vec<&str> = MODEL_ENDPOINTS.to_vec();
        for endpoint in catalog.models().flat_map(|m| m.endpoints.iter()) {
            if !endpoints.contains(&&**endpoint) {
                endpoints.push(endpoint);
            }
        }
        let endpoints = Paths::new(endpoints);
        let listing = catalog.listing(None);
        Snapshot {
            catalog,
            endpoints,
            listing,
        }
    }
}

impl LiveCatalog {
    /// Serves `catalog` until it is replaced.
    pub fn new(catalog: ModelCatalog) -> Self {
        LiveCatalog {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::new(catalog))),
        }
    }

    /// Serves `catalog` from the next request on.
    pub fn replace(&self, catalog: ModelCatalog) {
        self.current.store(Arc::new(Snapshot::new(catalog)));
    }

    /// The catalog served now.
    pub fn current(&self) -> ModelCatalog {
        self.current.load().catalog.clone()
    }

    pub(crate) fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }
}

impl From<ModelCatalog> for LiveCatalog {
    fn from(catalog: ModelCatalog) -> Self {
        LiveCatalog::new(catalog)
    }
}

impl fmt::Debug for LiveCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCatalog")
            .field("models", &self.current.load().catalog.len())
            .finish()
    }
}
