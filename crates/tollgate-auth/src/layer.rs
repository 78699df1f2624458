use std::sync::Arc;

use http::HeaderName;

use crate::KeyStore;
use crate::credentials::Sources;

/// Authenticates every request by API key and puts the caller's
/// [`Principal`](tollgate_core::Principal) in the request extensions.
///
/// Where the key is read and what every failure answers is described once, in the
/// [crate documentation](crate).
///
/// ```
/// use tollgate_auth::{BearerAuthLayer, InMemoryKeyStore};
/// use tollgate_core::Principal;
///
/// let store = InMemoryKeyStore::new().with_key("sk-llmaai-demo-key-1", Principal::new("key_demo", "acct_demo"));
/// let layer = BearerAuthLayer::new(store)
///     .required_prefix("sk-llmaai-")
///     .key_header(http::HeaderName::from_static("x-api-key"));
/// # let _ = layer;
/// ```
#[derive(Debug)]
pub struct BearerAuthLayer<K> {
    pub(crate) store: Arc<K>,
    pub(crate) sources: Arc<Sources>,
}

impl<K> Clone for BearerAuthLayer<K> {
    fn clone(&self) -> Self {
        BearerAuthLayer {
            store: self.store.clone(),
            sources: self.sources.clone(),
        }
    }
}

impl<K: KeyStore> BearerAuthLayer<K> {
    /// Authenticates against `store`, reading `Authorization: Bearer <key>`.
    pub fn new(store: K) -> Self {
        BearerAuthLayer {
            store: Arc::new(store),
            sources: Arc::new(Sources {
                raw_authorization: false,
                headers: Vec::new(),
                prefix: None,
            }),
        }
    }

    /// Also accepts a bare key in `Authorization`, with no scheme (as some gateways use).
    pub fn allow_raw_authorization(self) -> Self {
        self.with_sources(|sources| sources.raw_authorization = true)
    }

    /// Also reads the bare key from `header` (such as `x-api-key`) when `Authorization` is absent.
    pub fn key_header(self, header: HeaderName) -> Self {
        self.with_sources(|sources| sources.headers.push(header))
    }

    /// Rejects keys that do not start with `prefix` before any lookup.
    pub fn required_prefix(self, prefix: impl Into<Box<str>>) -> Self {
        let prefix = prefix.into();
        self.with_sources(|sources| sources.prefix = Some(prefix))
    }

    fn with_sources(self, change: impl FnOnce(&mut Sources)) -> Self {
        let mut sources = (*self.sources).clone();
        change(&mut sources);
        BearerAuthLayer {
            store: self.store,
            sources: Arc::new(sources),
        }
    }
}
