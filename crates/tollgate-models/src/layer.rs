use std::sync::Arc;

use tollgate_core::{BodyLimit, Paths};

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

/// Validates the `model` of every request against a [`ModelCatalog`] and resolves it.
///
/// What it checks and answers is described once, in the [crate documentation](crate).
///
/// ```
/// use tollgate_core::{BodyLimit, Paths};
/// use tollgate_models::{ModelCatalog, ModelResolutionLayer};
///
/// let catalog = ModelCatalog::from_toml(r#"
///     [[models]]
///     id = "gpt-5.4"
///     context_window = 400000
///     max_output_tokens = 128000
/// "#).unwrap();
/// let layer = ModelResolutionLayer::new(catalog).body_limit(BodyLimit::default().with_max_bytes(1 << 20));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct ModelResolutionLayer {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) catalog: ModelCatalog,
    pub(crate) body_limit: BodyLimit,
    pub(crate) endpoints: Paths,
}

impl ModelResolutionLayer {
    /// Validates models against `catalog`, reading bodies under [`BodyLimit::default`].
    pub fn new(catalog: ModelCatalog) -> Self {
        let mut endpoints: Vec<&str> = MODEL_ENDPOINTS.to_vec();
        for endpoint in catalog.models().flat_map(|m| m.endpoints.iter()) {
            if !endpoints.contains(&&**endpoint) {
                endpoints.push(endpoint);
            }
        }
        let endpoints = Paths::new(endpoints);
        ModelResolutionLayer {
            shared: Arc::new(Shared {
                catalog,
                body_limit: BodyLimit::default(),
                endpoints,
            }),
        }
    }

    /// The size and time limits of the body read, when this layer is the first to read it.
    pub fn body_limit(self, limit: BodyLimit) -> Self {
        ModelResolutionLayer {
            shared: Arc::new(Shared {
                catalog: self.shared.catalog.clone(),
                body_limit: limit,
                endpoints: self.shared.endpoints.clone(),
            }),
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &ModelCatalog {
        &self.shared.catalog
    }
}
