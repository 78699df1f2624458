//! Keys from a configuration file: [`KeyFile`] and its [`KeyEntry`]s.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use tollgate_core::{Principal, Rate, SpendCap};

use crate::{ApiKey, InMemoryKeyStore, KeyDigest};

/// A key file, as it appears in a gateway's configuration (TOML, JSON, ...): the prefix every
/// key carries, and the keys. Build a store from it with [`InMemoryKeyStore::from_file`].
///
/// ```
/// use tollgate_auth::{InMemoryKeyStore, KeyFile};
///
/// let file: KeyFile = serde_json::from_str(r#"{
///     "required_prefix": "sk-llmaai-",
///     "keys": [
///         {"key": "sk-llmaai-alice-0001", "id": "key_alice", "account": "acct_alice"},
///         {"sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
///          "id": "key_bob", "account": "acct_bob", "models": ["gpt-5.4-mini"],
///          "requests_per_minute": 5}
///     ]
/// }"#)?;
/// let store = InMemoryKeyStore::from_file(&file)?;
/// assert_eq!(store.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The prefix every key starts with (such as `sk-llmaai-`): plaintext keys in the file must
    /// carry it, and [`BearerAuthLayer::required_prefix`](crate::BearerAuthLayer::required_prefix)
    /// rejects presented keys without it before any lookup.
    #[serde(default)]
    pub required_prefix: Option<String>,
    /// The keys.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

/// One key of a [`KeyFile`]: the key (plaintext, hashed when the store is built, or only its
/// SHA-256 digest), who it belongs to, and what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The plaintext key; set exactly one of `key` and `sha256`. Only its digest is kept.
    #[serde(default)]
    pub key: Option<ApiKey>,
    /// The key's SHA-256 digest, 64 hex digits.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The key id (logged, and recorded in usage).
    pub id: String,
    /// The account whose balance it spends.
    pub account: String,
    /// The models it may use (after alias resolution); all when absent.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Its own request quota, overriding the default per-key one.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Its own token quota, overriding the default per-key one.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Spend caps in micro-units per period: `"5000000/month"`, `"250000/day"`, `"…/week"`
    /// (calendar periods in UTC), or `"1000000/86400000"` (rolling, in milliseconds).
    #[serde(default)]
    pub spend_caps: Option<Vec<String>>,
}

impl KeyEntry {
    fn digest(&self, required_prefix: Option<&str>) -> Result<KeyDigest, String> {
        match (&self.key, &self.sha256) {
            (Some(key), None) => match required_prefix {
                Some(prefix) if !key.expose().starts_with(prefix) => {
                    Err(format!("key does not start with {prefix:?}"))
                }
                _ => Ok(key.digest()),
            },
            (None, Some(hex)) => {
                KeyDigest::from_hex(hex).ok_or_else(|| "sha256 is not 64 hex digits".to_owned())
            }
            _ => Err("set exactly one of `key` and `sha256`".to_owned()),
        }
    }

    fn principal(&self) -> Result<Principal, String> {
        let quota = |per_minute: u64, field: &str| {
            Rate::per_minute(per_minute).map_err(|error| format!("{field}: {error}"))
        };
        let mut principal = Principal::new(self.id.as_str(), self.account.as_str());
        if let Some(models) = &self.models {
            principal = principal.with_allowed_models(models.iter().map(String::as_str));
        }
        if let Some(per_minute) = self.requests_per_minute {
            principal = principal.with_request_quota(quota(per_minute, "requests_per_minute")?);
        }
        if let Some(per_minute) = self.tokens_per_minute {
            principal = principal.with_token_quota(quota(per_minute, "tokens_per_minute")?);
        }
        if let Some(caps) = &self.spend_caps {
            let caps = caps
                .iter()
                .map(|cap| {
                    cap.parse()
                        .map_err(|error| format!("spend_caps: {cap:?}: {error}"))
                })
                .collect::<Result<Vec<SpendCap>, String>>()?;
            principal = principal.with_spend_caps(caps);
        }
        Ok(principal)
    }
}

/// Why a [`KeyFile`] could not be loaded: every problem found, each naming the key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFileError {
    /// What is wrong.
    pub problems: Vec<String>,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid key file: {}", self.problems.join("; "))
    }
}

impl std::error::Error for KeyFileError {}

impl InMemoryKeyStore {
    /// A store holding the file's keys. Every entry is checked first and every problem
    /// reported: exactly one of `key` and `sha256`, a well-formed digest, the required prefix
    /// on plaintext keys, non-zero quotas, well-formed spend caps, no id or key listed twice.
    ///
    /// ```
    /// use tollgate_auth::{ApiKey, InMemoryKeyStore, KeyEntry, KeyFile};
    ///
    /// let entry = KeyEntry {
    ///     key: Some(ApiKey::new("sk-other-0001")),
    ///     sha256: None,
    ///     id: "key_1".into(),
    ///     account: "acct_1".into(),
    ///     models: None,
    ///     requests_per_minute: Some(0),
    ///     tokens_per_minute: None,
    ///     spend_caps: Some(vec!["5000000/month".into()]),
    /// };
    /// let file = KeyFile { required_prefix: Some("sk-llmaai-".into()), keys: vec![entry] };
    /// let error = InMemoryKeyStore::from_file(&file).unwrap_err();
    /// assert_eq!(error.problems.len(), 2);
    /// ```
    pub fn from_file(file: &KeyFile) -> Result<InMemoryKeyStore, KeyFileError> {
        let store = InMemoryKeyStore::new();
        let mut problems = Vec::new();
        let mut ids = HashSet::new();
        let mut digests = HashSet::new();
        for entry in &file.keys {
            let mut problem = |what: String| problems.push(format!("key {}: {what}", entry.id));
            if !ids.insert(entry.id.as_str()) {
                problem("listed twice".to_owned());
            }
            let digest = entry
                .digest(file.required_prefix.as_deref())
                .map_err(&mut problem);
            let principal = entry.principal().map_err(&mut problem);
            if let Ok(digest) = digest {
                if !digests.insert(digest) {
                    problem("the same key as another entry".to_owned());
                } else if let Ok(principal) = principal {
                    store.insert_digest(digest, principal);
                }
            }
        }
        if problems.is_empty() {
            Ok(store)
        } else {
            Err(KeyFileError { problems })
        }
    }
}
