//! `BearerAuthLayer`: API-key authentication for LLM gateways.
//!
//! - The key comes from `Authorization: Bearer <key>` (a raw key in `Authorization`, an
//!   `x-api-key`-style header and a required prefix are options).
//! - Keys are stored as SHA-256 digests only ([`KeyDigest`]), compared in constant time; the
//!   [`KeyStore`] trait lets you back the lookup with your database, and [`InMemoryKeyStore`]
//!   is an in-memory store you can update at runtime without blocking readers, built from
//!   code or from a configuration's [`KeyFile`].
//! - Every failure is a 401 `auth_error`, code `invalid_api_key`, with
//!   `WWW-Authenticate: Bearer` and a message that tells the user what to fix: header missing,
//!   wrong scheme, empty key, whitespace around the key, the header sent twice (which one a
//!   proxy or the provider would read is anyone's guess), wrong prefix or malformed, unknown,
//!   revoked, expired. The key is never echoed back.
//! - On success the caller's [`Principal`](tollgate_core::Principal) goes into the request
//!   extensions, and its key id is recorded in the current span's `key_id` field (declare it,
//!   e.g. `key_id = tracing::field::Empty`, in your `TraceLayer`'s span).
//!
//! ```
//! use std::convert::Infallible;
//! use http::Request;
//! use tollgate_auth::{BearerAuthLayer, InMemoryKeyStore};
//! use tollgate_core::{Body, Principal};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let store = InMemoryKeyStore::new()
//!     .with_key("sk-llmaai-demo-0001", Principal::new("key_demo", "acct_demo"));
//! let service = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(store))
//!     .service_fn(|request: Request<Body>| async move {
//!         let principal = request.extensions().get::<Principal>().unwrap();
//!         Ok::<_, Infallible>(http::Response::new(Body::from(principal.account_id().to_owned())))
//!     });
//!
//! let request = Request::builder()
//!     .header("authorization", "Bearer sk-llmaai-demo-0001")
//!     .body(Body::empty())
//!     .unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//!
//! let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod credentials;
mod file;
mod key;
mod layer;
mod service;
mod store;

pub use file::{KeyEntry, KeyFile, KeyFileError};
pub use key::{ApiKey, KeyDigest};
pub use layer::BearerAuthLayer;
pub use service::{BearerAuth, ResponseFuture};
pub use store::{InMemoryKeyStore, KeyRecord, KeyStore};
