use std::sync::Arc;

use tollgate_core::BodyLimit;

use crate::LiveCatalog;

/// Validates the `model` of every request against a [`ModelCatalog`](crate::ModelCatalog) and resolves it.
///
/// What it checks and answers is described once, in the [crate documentation](crate). Give
/// it a [`LiveCatalog`] to replace the catalog while serving.
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
    pub(crate) catalog: LiveCatalog,
    pub(crate) body_limit: BodyLimit,
}

impl ModelResolutionLayer {
    /// Validates models against `catalog` (a [`ModelCatalog`](crate::ModelCatalog), or a [`LiveCatalog`] to replace
    /// it while serving), reading bodies under [`BodyLimit::default`].
    pub fn new(catalog: impl Into<LiveCatalog>) -> Self {
        ModelResolutionLayer {
            shared: Arc::new(Shared {
                catalog: catalog.into(),
                body_limit: BodyLimit::default(),
            }),
        }
    }

    /// The size and time limits of the body read, when this layer is the first to read it.
    pub fn body_limit(self, limit: BodyLimit) -> Self {
        ModelResolutionLayer {
            shared: Arc::new(Shared {
                catalog: self.shared.catalog.clone(),
                body_limit: limit,
            }),
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &LiveCatalog {
        &self.shared.catalog
    }
}
