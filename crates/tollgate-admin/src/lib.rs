//! An admin API for a running tollgate gateway: manage API keys and money while it serves.
//!
//! [`AdminService`] is a tower service (mount it on a listener of its own, or behind your
//! router) over any key store that implements [`KeyAdmin`] and any ledger that implements
//! [`AccountAdmin`]: the in-memory ones, and the Redis ones with the feature `redis`, where a
//! key issued or revoked through one replica is in force on every replica at once and a
//! top-up is available to the very next request anywhere.
//!
//! ```
//! use tollgate_admin::AdminService;
//! use tollgate_auth::InMemoryKeyStore;
//! use tollgate_balance::InMemoryLedger;
//!
//! let admin = AdminService::new(InMemoryKeyStore::new(), InMemoryLedger::new())
//!     .admin_key("ops", "adm-0123456789abcdef")
//!     .key_prefix("sk-llmaai-")
//!     .on_reload(|| async { Ok::<_, String>("nothing to reload".into()) });
//! # let _ = admin;
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod service;
mod store;

pub use service::{AdminService, ReloadFuture};
pub use store::{AccountAdmin, AdminFuture, KeyAdmin};
