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

/// Validates the `model` of every request against a [`ModelCatalog`].
///
/// For `POST` requests to an endpoint that names a model (OpenAI's, and any endpoint the
/// catalog lists) it reads the body once as JSON, whatever `content-type` says (shared with other body-aware layers
/// through [`tollgate_core::buffer_chat_request`]) and answers:
/// - 400 `invalid_request_error` (param `model`) when `model` is missing or not a string;
/// - 404 `model_not_found` with a did-you-mean when a name is close;
/// - 410 `model_retired` with the replacement and the date;
/// - 403 `forbidden` when the caller's [`Principal`](tollgate_core::Principal) may not use it;
/// - 400 `unsupported_operation` when the model does not serve the endpoint;
/// - otherwise it serves the request: an alias is rewritten to the canonical id by splicing the
///   body (every other byte unchanged), the [`ModelInfo`](tollgate_core::ModelInfo) goes into
///   the request extensions, and the response gets `x-tollgate-model` (unless an inner layer,
///   such as a fallback, already set it) and, for a deprecated model, `Deprecation`, `Sunset`
///   and `Link`.
/// - A `fallbacks` array in the body (a gateway extension) is checked like `model`, each
///   error naming `fallbacks[i]`; without one, the catalog entry's `fallbacks` apply (those
///   the caller may use on this endpoint). The resolved models go into the request extensions
///   as [`Fallbacks`](tollgate_core::Fallbacks) for the upstream.
///
/// Other requests (other methods or paths, multipart uploads) pass through untouched.
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
