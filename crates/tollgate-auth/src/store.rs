//! Where keys live: the `KeyStore` trait and the in-memory `InMemoryKeyStore`.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tollgate_core::{BoxError, Principal};

use crate::KeyDigest;

/// What a store knows about one key.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_auth::KeyRecord;
/// use tollgate_core::Principal;
///
/// let record = KeyRecord::new(Principal::new("key_1", "acct_1"))
///     .expires_at(SystemTime::now() + Duration::from_secs(3600));
/// assert!(!record.is_expired(SystemTime::now()));
/// assert!(!record.revoked);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRecord {
    /// Who the key belongs to.
    pub principal: Principal,
    /// Whether the key was revoked.
    pub revoked: bool,
    /// When the key stops working, if ever.
    pub expires_at: Option<SystemTime>,
}

impl KeyRecord {
    /// An active key that never expires.
    pub fn new(principal: Principal) -> Self {
        KeyRecord {
            principal,
            revoked: false,
            expires_at: None,
        }
    }

    /// Marks the key revoked.
    pub fn revoked(mut self) -> Self {
        self.revoked = true;
        self
    }

    /// Sets when the key expires.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Looks keys up by digest. Implement it over your database; [`InMemoryKeyStore`] is the
/// in-memory one.
///
/// A store never sees a plaintext key: the layer hashes the presented key first.
///
/// ```
/// use std::future::{Ready, ready};
/// use tollgate_auth::{KeyDigest, KeyRecord, KeyStore};
/// use tollgate_core::{BoxError, Principal};
///
/// /// Every key is valid: for a local demo only.
/// struct OpenDoor;
///
/// impl KeyStore for OpenDoor {
///     type Future = Ready<Result<Option<KeyRecord>, BoxError>>;
///     fn lookup(&self, digest: &KeyDigest) -> Self::Future {
///         let id = format!("key_{}", &digest.to_hex()[..8]);
///         ready(Ok(Some(KeyRecord::new(Principal::new(id, "demo")))))
///     }
/// }
/// ```
pub trait KeyStore: Send + Sync + 'static {
    /// The lookup's future; `std::future::Ready` for in-memory stores (`Unpin`: an in-memory
    /// answer is taken on the spot, without parking the request), a boxed future for
    /// databases.
    type Future: Future<Output = Result<Option<KeyRecord>, BoxError>> + Send + Unpin + 'static;

    /// The record of the key with this digest; `Ok(None)` if there is none. An `Err` (the
    /// database is down) is answered with 503 `service_unavailable`.
    fn lookup(&self, digest: &KeyDigest) -> Self::Future;
}

impl<K: KeyStore> KeyStore for Arc<K> {
    type Future = K::Future;

    fn lookup(&self, digest: &KeyDigest) -> Self::Future {
        (**self).lookup(digest)
    }
}

/// An in-memory key store holding SHA-256 digests only. Cheap to clone (shared state);
/// updated at runtime (insert, revoke, expire, remove) without blocking readers: lookups run
/// on a lock-free map (papaya), so a revocation takes effect on the very next request.
///
/// ```
/// use tollgate_auth::{KeyDigest, InMemoryKeyStore};
/// use tollgate_core::Principal;
///
/// let store = InMemoryKeyStore::new()
///     .with_key("sk-llmaai-alice-0001", Principal::new("key_alice", "acct_alice"));
/// store.insert_digest(KeyDigest::from_hex(&"ab".repeat(32)).unwrap(), Principal::new("key_bob", "acct_bob"));
/// assert_eq!(store.len(), 2);
/// assert!(store.revoke(&KeyDigest::of("sk-llmaai-alice-0001")));
/// assert!(format!("{store:?}").contains("keys: 2"));
/// ```
#[derive(Clone, Default)]
pub struct InMemoryKeyStore {
    /// The key set, swapped whole by [`InMemoryKeyStore::replace_all`].
    keys: Arc<ArcSwap<Keys>>,
}

// foldhash, not std's SipHash: a digest is already uniform, and the lookup is on every request.
type Keys = papaya::HashMap<KeyDigest, KeyRecord, foldhash::fast::RandomState>;

impl InMemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryKeyStore::default()
    }

    /// Adds a plaintext key (only its digest is kept).
    pub fn with_key(self, key: &str, principal: Principal) -> Self {
        self.insert(key, principal);
        self
    }

    /// Adds a key by digest.
    pub fn with_digest(self, digest: KeyDigest, principal: Principal) -> Self {
        self.insert_digest(digest, principal);
        self
    }

    /// Adds or replaces a plaintext key (only its digest is kept).
    pub fn insert(&self, key: &str, principal: Principal) {
        self.insert_digest(KeyDigest::of(key), principal);
    }

    /// Adds or replaces a key by digest.
    pub fn insert_digest(&self, digest: KeyDigest, principal: Principal) {
        self.insert_record(digest, KeyRecord::new(principal));
    }

    /// Adds or replaces a full record.
    pub fn insert_record(&self, digest: KeyDigest, record: KeyRecord) {
        self.keys.load().pin().insert(digest, record);
    }

    /// Revokes a key; `false` if the store does not have it.
    pub fn revoke(&self, digest: &KeyDigest) -> bool {
        self.update(digest, |record| record.revoked = true)
    }

    /// Sets when a key expires; `false` if the store does not have it.
    pub fn expire_at(&self, digest: &KeyDigest, at: SystemTime) -> bool {
        self.update(digest, |record| record.expires_at = Some(at))
    }

    /// Forgets a key; `false` if the store did not have it.
    pub fn remove(&self, digest: &KeyDigest) -> bool {
        self.keys.load().pin().remove(digest).is_some()
    }

    /// Replaces every key with `fresh`'s at once (a reloaded key file): a lookup sees either
    /// the old set or the new one, never a mix.
    ///
    /// ```
    /// use tollgate_auth::{InMemoryKeyStore, KeyDigest};
    /// use tollgate_core::Principal;
    ///
    /// let store = InMemoryKeyStore::new().with_key("sk-old", Principal::new("key_old", "acct"));
    /// store.replace_all(&InMemoryKeyStore::new().with_key("sk-new", Principal::new("key_new", "acct")));
    /// assert_eq!(store.len(), 1);
    /// assert!(store.records()[0].0 == KeyDigest::of("sk-new"));
    /// ```
    pub fn replace_all(&self, fresh: &InMemoryKeyStore) {
        self.keys.store(fresh.keys.load_full());
    }

    /// Every key's digest and record (to copy the store into another, such as a shared one).
    ///
    /// ```
    /// use tollgate_auth::InMemoryKeyStore;
    /// use tollgate_core::Principal;
    ///
    /// let store = InMemoryKeyStore::new().with_key("sk-a", Principal::new("key_a", "acct_a"));
    /// let records = store.records();
    /// assert_eq!(records[0].1.principal.key_id(), "key_a");
    /// ```
    pub fn records(&self) -> Vec<(KeyDigest, KeyRecord)> {
        self.keys
            .load()
            .pin()
            .iter()
            .map(|(digest, record)| (*digest, record.clone()))
            .collect()
    }

    /// How many keys the store holds (revoked and expired ones included).
    pub fn len(&self) -> usize {
        self.keys.load().len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.load().is_empty()
    }

    fn update(&self, digest: &KeyDigest, change: impl Fn(&mut KeyRecord)) -> bool {
        self.keys
            .load()
            .pin()
            .update(*digest, |record| {
                let mut record = record.clone();
                change(&mut record);
                record
            })
            .is_some()
    }
}

impl KeyStore for InMemoryKeyStore {
    type Future = Ready<Result<Option<KeyRecord>, BoxError>>;

    fn lookup(&self, digest: &KeyDigest) -> Self::Future {
        ready(Ok(self.keys.load().pin().get(digest).cloned()))
    }
}

impl fmt::Debug for InMemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not even the digests: they identify keys.
        f.debug_struct("InMemoryKeyStore")
            .field("keys", &self.len())
            .finish()
    }
}
