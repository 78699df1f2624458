//! API keys and their digests.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 digest of an API key: what a store keeps instead of the key.
///
/// Equality is constant-time (`subtle`), so a map lookup by digest never reveals how many
/// leading bytes of a stored digest matched.
///
/// ```
/// use tollgate_auth::KeyDigest;
///
/// let digest = KeyDigest::of("sk-llmaai-demo");
/// assert_eq!(digest, KeyDigest::from_hex(&digest.to_hex()).unwrap());
/// assert_ne!(digest, KeyDigest::of("sk-llmaai-demO"));
/// ```
#[derive(Clone, Copy, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Hashes a plaintext key.
    pub fn of(key: &str) -> KeyDigest {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    /// A digest from its 32 raw bytes (as stored in a database).
    pub fn from_bytes(bytes: [u8; 32]) -> KeyDigest {
        KeyDigest(bytes)
    }

    /// A digest from 64 hex digits; `None` if malformed.
    pub fn from_hex(hex: &str) -> Option<KeyDigest> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(KeyDigest(bytes))
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for KeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for KeyDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({}…)", &self.to_hex()[..8])
    }
}

/// A plaintext API key, as a [`KeyEntry`](crate::KeyEntry) holds it, or for printing a demo key
/// once. Its `Debug` and `Display` redact the secret; it deserializes from a string.
///
/// ```
/// use tollgate_auth::ApiKey;
///
/// let key = ApiKey::new("sk-llmaai-0123456789abcdef");
/// assert_eq!(format!("{key:?}"), "ApiKey(sk-llmaai-…cdef)");
/// assert_eq!(key.expose(), "sk-llmaai-0123456789abcdef");
/// ```
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct ApiKey(Box<str>);

impl ApiKey {
    /// Wraps a plaintext key.
    pub fn new(key: impl Into<Box<str>>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The secret itself. Call it only to hand the key to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key's digest.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest::of(&self.0)
    }

    /// A form that is safe to log and show: the prefix up to its last `-` (at most 12 bytes)
    /// and the last 4 characters.
    ///
    /// ```
    /// use tollgate_auth::ApiKey;
    ///
    /// assert_eq!(ApiKey::new("sk-llmaai-0123456789abcdef").redacted(), "sk-llmaai-…cdef");
    /// assert_eq!(ApiKey::new("short").redacted(), "…");
    /// ```
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

pub(crate) fn redact(key: &str) -> String {
    if key.len() < 16 || !key.is_ascii() {
        return "…".to_owned();
    }
    let prefix_end = key[..12].rfind('-').map_or(0, |dash| dash + 1);
    format!("{}…{}", &key[..prefix_end], &key[key.len() - 4..])
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.redacted())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
