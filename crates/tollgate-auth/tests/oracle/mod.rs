//! The rules for finding the key in a request's headers, written as simply as they read, and
//! the layer run against them.
//!
//! Shared by the tests (`tests/credentials.rs`) and the fuzz target (`fuzz/`), which includes
//! this file by path.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use http::{HeaderName, HeaderValue, Request, Response};
use tollgate_auth::{BearerAuthLayer, KeyDigest, KeyRecord, KeyStore};
use tollgate_core::{Body, BoxError, Principal};
use tower::{ServiceBuilder, ServiceExt};

/// How the layer is configured, and the headers a request carries.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    /// `allow_raw_authorization()`
    pub raw_authorization: bool,
    /// `required_prefix(..)`
    pub prefix: Option<&'a str>,
    /// `key_header(x-api-key)`
    pub key_header: bool,
    pub authorization: Option<&'a [u8]>,
    pub api_key: Option<&'a [u8]>,
}

/// The key the rules find in `presented`, or `None` when they reject it:
/// - `Authorization`, when present, decides: `Bearer` (any case), one space and the key; or,
///   where raw keys are allowed, a value that is not just the scheme, taken whole;
/// - without it, `x-api-key` where configured, taken whole;
/// - a key is printable ASCII, not empty, without blanks, and starts with the prefix.
pub fn reference_key(presented: &Presented<'_>) -> Option<String> {
    let printable = |value: &[u8]| {
        value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
            .then(|| String::from_utf8_lossy(value).into_owned())
    };
    let key = match presented.authorization {
        Some(value) => {
            let value = printable(value)?;
            let scheme = value.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer "));
            match scheme {
                Some(_) => value[7..].to_owned(),
                None if presented.raw_authorization && !value.eq_ignore_ascii_case("bearer") => {
                    value
                }
                None => return None,
            }
        }
        None if presented.key_header => printable(presented.api_key?)?,
        None => return None,
    };
    let blank = key.bytes().any(|b| b == b' ' || b == b'\t');
    let prefixed = presented
        .prefix
        .is_none_or(|prefix| key.starts_with(prefix));
    (!key.is_empty() && !blank && prefixed).then_some(key)
}

/// Remembers the digest it was asked for, and knows every key.
#[derive(Clone, Default)]
struct RecordingStore(Arc<Mutex<Option<KeyDigest>>>);

impl KeyStore for RecordingStore {
    type Future = Ready<Result<Option<KeyRecord>, BoxError>>;

    fn lookup(&self, digest: &KeyDigest) -> Self::Future {
        *self.0.lock().unwrap() = Some(*digest);
        ready(Ok(Some(KeyRecord::new(Principal::new("key", "account")))))
    }
}

/// Runs a request with `presented`'s headers through the layer so configured: whether it was
/// admitted, and the digest of the key it looked up. `None` when `http` cannot carry the
/// header values at all.
pub fn layer_outcome(presented: &Presented<'_>) -> Option<(bool, Option<KeyDigest>)> {
    let store = RecordingStore::default();
    let mut layer = BearerAuthLayer::new(store.clone());
    if presented.raw_authorization {
        layer = layer.allow_raw_authorization();
    }
    if let Some(prefix) = presented.prefix {
        layer = layer.required_prefix(prefix);
    }
    if presented.key_header {
        layer = layer.key_header(HeaderName::from_static("x-api-key"));
    }
    let mut request = Request::new(Body::empty());
    for (name, value) in [
        ("authorization", presented.authorization),
        ("x-api-key", presented.api_key),
    ] {
        if let Some(value) = value {
            let value = HeaderValue::from_bytes(value).ok()?;
            request.headers_mut().insert(name, value);
        }
    }
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    // An in-memory store answers on the spot: the first poll decides.
    let future = pin!(service.oneshot(request));
    let Poll::Ready(response) = future.poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("an in-memory lookup left the request pending");
    };
    let status = response.expect("the layer never fails").status();
    assert!(status == 200 || status == 401, "status {status}");
    let looked_up = *store.0.lock().unwrap();
    Some((status == 200, looked_up))
}

/// Asserts that the layer admits exactly what [`reference_key`] accepts, looking up that key,
/// and rejects the rest before any lookup.
pub fn check_presented(presented: &Presented<'_>) {
    let Some((admitted, looked_up)) = layer_outcome(presented) else {
        return;
    };
    match reference_key(presented) {
        Some(key) => {
            assert!(admitted, "{presented:?} refused; the rules find {key:?}");
            assert!(
                looked_up == Some(KeyDigest::of(&key)),
                "{presented:?}: another key than {key:?} looked up"
            );
        }
        None => {
            assert!(!admitted, "{presented:?} admitted; the rules refuse it");
            assert!(
                looked_up.is_none(),
                "{presented:?} looked up; the rules refuse it"
            );
        }
    }
}
