//! What the admin service needs of a key store and a ledger, for the in-memory and the Redis
//! backends.

use std::future::Future;
use std::pin::Pin;

use tollgate_auth::{InMemoryKeyStore, KeyDigest, KeyRecord};
use tollgate_balance::{InMemoryLedger, Ledger, Reservation};
use tollgate_core::BoxError;

/// The future of an admin operation (administration is not the hot path: boxed).
pub type AdminFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

/// A key store the admin service can read whole and write one key of. A write must reach
/// every replica's lookups at once (the Redis store publishes it).
///
/// ```
/// use tollgate_admin::KeyAdmin;
/// use tollgate_auth::{InMemoryKeyStore, KeyDigest, KeyRecord};
/// use tollgate_core::Principal;
///
/// # tokio_test::block_on(async {
/// let store = InMemoryKeyStore::new();
/// let record = KeyRecord::new(Principal::new("key_1", "acct_1"));
/// store.store(KeyDigest::of("sk-1"), record.clone()).await.unwrap();
/// assert_eq!(KeyAdmin::records(&store).await.unwrap(), vec![(KeyDigest::of("sk-1"), record)]);
/// # });
/// ```
pub trait KeyAdmin: Send + Sync + 'static {
    /// Every key, ordered by key id.
    fn records(&self) -> AdminFuture<'_, Vec<(KeyDigest, KeyRecord)>>;
    /// Stores `record` under `digest`, replacing what was there.
    fn store(&self, digest: KeyDigest, record: KeyRecord) -> AdminFuture<'_, ()>;
}

/// A ledger the admin service can also ask for an account's open reservations.
pub trait AccountAdmin: Ledger {
    /// The reservations of `account` open now.
    fn held(&self, account: &str) -> AdminFuture<'_, Vec<Reservation>>;
}

impl KeyAdmin for InMemoryKeyStore {
    fn records(&self) -> AdminFuture<'_, Vec<(KeyDigest, KeyRecord)>> {
        let mut records = InMemoryKeyStore::records(self);
        records.sort_by(|(_, a), (_, b)| a.principal.key_id().cmp(b.principal.key_id()));
        Box::pin(async move { Ok(records) })
    }

    fn store(&self, digest: KeyDigest, record: KeyRecord) -> AdminFuture<'_, ()> {
        self.insert_record(digest, record);
        Box::pin(async { Ok(()) })
    }
}

impl AccountAdmin for InMemoryLedger {
    fn held(&self, account: &str) -> AdminFuture<'_, Vec<Reservation>> {
        let held = self.open_reservations(account);
        Box::pin(async move { Ok(held) })
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use tollgate_redis::{RedisKeyStore, RedisLedger};

    impl KeyAdmin for RedisKeyStore {
        fn records(&self) -> AdminFuture<'_, Vec<(KeyDigest, KeyRecord)>> {
            Box::pin(RedisKeyStore::records(self))
        }

        fn store(&self, digest: KeyDigest, record: KeyRecord) -> AdminFuture<'_, ()> {
            Box::pin(async move { self.insert(&digest, &record).await })
        }
    }

    impl AccountAdmin for RedisLedger {
        fn held(&self, account: &str) -> AdminFuture<'_, Vec<Reservation>> {
            let account = account.to_owned();
            Box::pin(async move { self.open_reservations(&account).await })
        }
    }
}
