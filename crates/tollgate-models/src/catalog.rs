//! The model catalog: entries as configured, validated into a catalog that resolves slugs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use tollgate_core::{Date, Fallbacks, Lifecycle, ModelInfo, Prices, X_MODEL};

use crate::suggest::{Candidate, closest};

/// The endpoint a model supports when its entry names none.
pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";

/// One model as written in a catalog file (TOML or JSON).
///
/// ```
/// use tollgate_models::ModelCatalog;
///
/// let catalog = ModelCatalog::from_toml(r#"
///     [[models]]
///     id = "openai/gpt-5.4"
///     aliases = ["gpt-5.4"]
///     owned_by = "openai"
///     context_window = 400000
///     max_output_tokens = 128000
///     prices = { input = 2500000, output = 10000000 }   # micro-units per million tokens
///
///     [[models]]
///     id = "openai/gpt-4o"
///     context_window = 128000
///     max_output_tokens = 16384
///     status = "retired"
///     retired_on = "2026-06-30"
///     replacement = "openai/gpt-5.4"
/// "#).unwrap();
/// assert_eq!(catalog.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Canonical id: a lowercase slug, `provider/model` or plain.
    pub id: String,
    /// Other names that resolve to this model (rewritten to `id` before the upstream sees them).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Who serves it (`owned_by` in `/v1/models`).
    #[serde(default)]
    pub owned_by: Option<String>,
    /// Prompt plus completion tokens the model accepts.
    pub context_window: u64,
    /// The most completion tokens it generates.
    pub max_output_tokens: u64,
    /// The endpoints it serves; `/v1/chat/completions` when empty.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Prices in micro-units per million tokens.
    #[serde(default)]
    pub prices: PriceEntry,
    /// `active` (default), `deprecated` or `retired`.
    #[serde(default)]
    pub status: Status,
    /// When it was deprecated (`YYYY-MM-DD`), for the `Deprecation` header.
    #[serde(default)]
    pub deprecated_on: Option<String>,
    /// When a deprecated model stops being served (`YYYY-MM-DD`); required when deprecated.
    #[serde(default)]
    pub sunset: Option<String>,
    /// When a retired model was retired (`YYYY-MM-DD`); required when retired.
    #[serde(default)]
    pub retired_on: Option<String>,
    /// What to use instead of a deprecated or retired model.
    #[serde(default)]
    pub replacement: Option<String>,
    /// Model ids tried in order when this model still fails after its retries (a request's
    /// own `fallbacks` replace them).
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// A model-specific note shown when it is sent to an endpoint it does not serve.
    #[serde(default)]
    pub hint: Option<String>,
    /// A documentation link for this model's errors; the catalog's `docs_url` when absent.
    #[serde(default)]
    pub docs_url: Option<String>,
    /// `created` in `/v1/models` (Unix seconds).
    #[serde(default)]
    pub created: u64,
}

/// Prices as written in a catalog: micro-units of the currency per million tokens.
///
/// ```
/// use tollgate_models::ModelCatalog;
///
/// // Prompt tokens the provider read from its cache cost a tenth here.
/// let catalog = ModelCatalog::from_toml(r#"
///     [[models]]
///     id = "gpt-5.4"
///     context_window = 400000
///     max_output_tokens = 128000
///     prices = { input = 2500000, cached_input = 250000, output = 10000000 }
/// "#).unwrap();
/// let prices = catalog.get("gpt-5.4").unwrap().info.prices;
/// assert_eq!(prices.cached_input_per_million(), 250_000);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Per million prompt tokens.
    #[serde(default)]
    pub input: u64,
    /// Per million prompt tokens read from the provider's prompt cache (OpenAI's "cached
    /// input"); at most `input`. Without it, cached tokens cost `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<u64>,
    /// Per million completion tokens (reasoning tokens included, as providers count them).
    #[serde(default)]
    pub output: u64,
}

impl PriceEntry {
    /// These prices, as the layers use them.
    ///
    /// ```
    /// use tollgate_core::Prices;
    /// use tollgate_models::PriceEntry;
    ///
    /// let entry = PriceEntry { input: 2_500_000, cached_input: Some(250_000), output: 10_000_000 };
    /// assert_eq!(entry.prices(), Prices::new(2_500_000, 10_000_000).with_cached_input(250_000));
    /// ```
    pub fn prices(&self) -> Prices {
        let prices = Prices::new(self.input, self.output);
        match self.cached_input {
            Some(cached) => prices.with_cached_input(cached),
            None => prices,
        }
    }
}

/// A model's status in a catalog file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Served normally.
    #[default]
    Active,
    /// Served with `Deprecation` and `Sunset` headers.
    Deprecated,
    /// Answered with 410.
    Retired,
}

/// A catalog file: a documentation link for errors and the models.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// The default `docs_url` of error details.
    #[serde(default)]
    pub docs_url: Option<String>,
    /// The models.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

/// Why a catalog could not be built: every problem found, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogError {
    /// What is wrong, each naming the model and field.
    pub problems: Vec<String>,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid model catalog: {}", self.problems.join("; "))
    }
}

impl std::error::Error for CatalogError {}

/// A model of the catalog: its [`ModelInfo`] and what the catalog layer needs to answer for it.
#[derive(Clone, Debug)]
pub struct Model {
    /// The resolved model, as other layers see it.
    pub info: ModelInfo,
    /// Its aliases.
    pub aliases: Vec<Arc<str>>,
    /// The endpoints it serves.
    pub endpoints: Vec<Arc<str>>,
    /// Shown when it is sent to an endpoint it does not serve.
    pub hint: Option<Arc<str>>,
    /// The documentation link of its errors.
    pub docs_url: Option<Arc<str>>,
    /// `created` in `/v1/models`.
    pub created: u64,
    /// Its configured fallbacks, by position in the catalog.
    pub(crate) fallbacks: Vec<usize>,
    /// The same, as the upstream takes them: shared by every request that may use them all.
    pub(crate) fallback_list: Fallbacks,
    /// Response headers for every request it serves, rendered once: `x-tollgate-model`, and
    /// `Deprecation`, `Sunset`, `Link` for a deprecated model.
    pub(crate) headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl Model {
    /// The canonical id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Whether it serves `endpoint`.
    pub fn serves(&self, endpoint: &str) -> bool {
        self.endpoints.iter().any(|e| &**e == endpoint)
    }
}

/// What a requested model name resolves to.
#[derive(Clone, Copy, Debug)]
pub enum Resolution<'a> {
    /// A model, by its id or one of its aliases.
    Found {
        /// The model.
        model: &'a Model,
        /// Whether the name was an alias (the body is rewritten to the id).
        via_alias: bool,
    },
    /// No model has that name.
    NotFound {
        /// The closest name, if one is close enough to suggest.
        suggestion: Option<&'a str>,
    },
}

/// A validated model catalog. Cheap to clone.
///
/// Build it from [`ModelEntry`]s, TOML or JSON; every invalid configuration is an error naming
/// the model and field: ids that are not lowercase slugs, duplicate ids or aliases,
/// replacements that do not exist or are retired themselves, missing lifecycle dates, a max
/// output above the context window, endpoints that are not `/v1/...` paths.
///
/// ```
/// use tollgate_models::{ModelCatalog, Resolution};
///
/// let catalog = ModelCatalog::from_json(r#"{"models": [
///     {"id": "gpt-5.4", "aliases": ["gpt-5"], "context_window": 400000, "max_output_tokens": 128000}
/// ]}"#).unwrap();
/// assert!(matches!(catalog.resolve("gpt-5"), Resolution::Found { via_alias: true, .. }));
/// assert!(matches!(catalog.resolve("GPT-5.4"), Resolution::NotFound { suggestion: Some("gpt-5.4") }));
/// ```
#[derive(Clone, Debug)]
pub struct ModelCatalog {
    inner: Arc<Inner>,
}

/// A model's names to its index and whether the name is an alias. foldhash, not std's
/// SipHash: the keys come from the operator's catalog, and the lookup is on every request.
type Names = HashMap<Arc<str>, (usize, bool), foldhash::fast::RandomState>;

#[derive(Debug)]
struct Inner {
    models: Vec<Model>,
    /// Ids and aliases, to the model index and whether the name is an alias.
    names: Names,
    /// Ids and aliases, prepared for did-you-mean.
    ids: Vec<Candidate>,
    aliases: Vec<Candidate>,
    docs_url: Option<Arc<str>>,
}

impl ModelCatalog {
    /// Parses a TOML catalog file.
    pub fn from_toml(text: &str) -> Result<ModelCatalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(|error| CatalogError {
            problems: vec![format!("not a valid TOML catalog: {error}")],
        })?;
        ModelCatalog::from_file(file)
    }

    /// Parses a JSON catalog file.
    pub fn from_json(text: &str) -> Result<ModelCatalog, CatalogError> {
        let file: CatalogFile = serde_json::from_str(text).map_err(|error| CatalogError {
            problems: vec![format!("not a valid JSON catalog: {error}")],
        })?;
        ModelCatalog::from_file(file)
    }

    /// Builds a catalog from entries.
    pub fn from_entries(entries: Vec<ModelEntry>) -> Result<ModelCatalog, CatalogError> {
        ModelCatalog::from_file(CatalogFile {
            docs_url: None,
            models: entries,
        })
    }

    /// Builds a catalog from a parsed file.
    pub fn from_file(file: CatalogFile) -> Result<ModelCatalog, CatalogError> {
        build(file, Timestamp::now())
    }

    /// How many models it holds (retired ones included).
    pub fn len(&self) -> usize {
        self.inner.models.len()
    }

    /// Whether it holds no model.
    pub fn is_empty(&self) -> bool {
        self.inner.models.is_empty()
    }

    /// Every model, in file order.
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.inner.models.iter()
    }

    pub(crate) fn at(&self, index: usize) -> &Model {
        &self.inner.models[index]
    }

    /// The model with this canonical id.
    pub fn get(&self, id: &str) -> Option<&Model> {
        match self.inner.names.get(id) {
            Some(&(index, false)) => Some(&self.inner.models[index]),
            _ => None,
        }
    }

    /// The catalog's default documentation link.
    pub fn docs_url(&self) -> Option<&str> {
        self.inner.docs_url.as_deref()
    }

    /// The model a name (an id or an alias, exactly as written) stands for, without looking
    /// for a suggestion when none does.
    pub(crate) fn named(&self, requested: &str) -> Option<&Model> {
        let &(index, _) = self.inner.names.get(requested)?;
        Some(&self.inner.models[index])
    }

    /// Resolves a requested name (an id or an alias, exactly as written).
    pub fn resolve(&self, requested: &str) -> Resolution<'_> {
        match self.inner.names.get(requested) {
            Some(&(index, via_alias)) => Resolution::Found {
                model: &self.inner.models[index],
                via_alias,
            },
            None => Resolution::NotFound {
                suggestion: self.suggest(requested),
            },
        }
    }

    /// The name closest to an unknown one: a case-insensitive match first (`GPT-5.4` →
    /// `gpt-5.4`), then a unique `provider/` completion (`gpt-5.4` → `openai/gpt-5.4`), then
    /// the nearest id by edit distance, then the nearest alias.
    pub fn suggest(&self, requested: &str) -> Option<&str> {
        let lower = requested.to_lowercase();
        if let Some((name, _)) = self.inner.names.get_key_value(lower.as_str()) {
            return Some(name);
        }
        if !lower.contains('/') {
            let suffix = format!("/{lower}");
            let mut matches = self
                .inner
                .models
                .iter()
                .filter(|m| m.info.id.ends_with(&suffix));
            if let (Some(only), None) = (matches.next(), matches.next()) {
                return Some(only.id());
            }
        }
        let limit = match lower.chars().count() {
            0..=4 => 1,
            5..=12 => 2,
            _ => 3,
        };
        closest(&lower, limit, &self.inner.ids)
            .or_else(|| closest(&lower, limit, &self.inner.aliases))
    }

    /// The `/v1/models` body for the models a caller may use (all when `allowed` is `None`),
    /// retired models left out.
    pub(crate) fn listing(&self, allowed: Option<&[Arc<str>]>) -> Bytes {
        let data: Vec<_> = self
            .inner
            .models
            .iter()
            .filter(|m| !m.info.lifecycle.is_retired())
            .filter(|m| allowed.is_none_or(|allowed| allowed.iter().any(|a| **a == *m.info.id)))
            .map(model_object)
            .collect();
        Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
    }
}

pub(crate) fn model_object(model: &Model) -> serde_json::Value {
    serde_json::json!({
        "id": &*model.info.id,
        "object": "model",
        "created": model.created,
        "owned_by": &*model.info.owned_by,
    })
}

fn build(file: CatalogFile, now: Timestamp) -> Result<ModelCatalog, CatalogError> {
    let mut problems = Vec::new();
    let mut names = Names::default();
    let mut claim =
        |name: &str, index: usize, alias: bool, owner: &str, problems: &mut Vec<String>| {
            let what = if alias { "alias" } else { "id" };
            if let Err(why) = check_slug(name) {
                problems.push(format!("model \"{owner}\": {what} \"{name}\" {why}"));
            }
            match names.get(name) {
                Some(&(_, other_alias)) => problems.push(format!(
                    "model \"{owner}\": {what} \"{name}\" is already used as {}",
                    if other_alias {
                        "an alias"
                    } else {
                        "a model id"
                    }
                )),
                None => {
                    names.insert(Arc::from(name), (index, alias));
                }
            }
        };
    for (index, entry) in file.models.iter().enumerate() {
        claim(&entry.id, index, false, &entry.id, &mut problems);
        for alias in &entry.aliases {
            claim(alias, index, true, &entry.id, &mut problems);
        }
    }

    let docs_url: Option<Arc<str>> = file.docs_url.as_deref().map(Arc::from);
    let mut models = Vec::with_capacity(file.models.len());
    for entry in &file.models {
        let id = entry.id.as_str();
        let mut problem = |text: String| problems.push(format!("model \"{id}\": {text}"));
        if entry.context_window == 0 {
            problem("context_window must be positive".into());
        }
        if entry.max_output_tokens == 0 || entry.max_output_tokens > entry.context_window {
            problem(format!(
                "max_output_tokens ({}) must be positive and at most the context_window ({})",
                entry.max_output_tokens, entry.context_window
            ));
        }
        if let Some(cached) = entry.prices.cached_input
            && cached > entry.prices.input
        {
            problem(format!(
                "prices.cached_input ({cached}) must be at most prices.input ({})",
                entry.prices.input
            ));
        }
        for endpoint in &entry.endpoints {
            if !endpoint.starts_with("/v1/") || endpoint.contains(char::is_whitespace) {
                problem(format!(
                    "endpoint \"{endpoint}\" is not a path like /v1/chat/completions"
                ));
            }
        }
        let mut date = |field: &str, value: &Option<String>, required: bool| -> Option<Date> {
            match value {
                Some(text) => text.parse::<Date>().ok().or_else(|| {
                    problem(format!("{field} \"{text}\" is not a date (YYYY-MM-DD)"));
                    None
                }),
                None if required => {
                    problem(
                        format!("{field} is required for a {:?} model", entry.status)
                            .to_lowercase(),
                    );
                    None
                }
                None => None,
            }
        };
        let deprecated_on = date("deprecated_on", &entry.deprecated_on, false);
        let sunset = date("sunset", &entry.sunset, entry.status == Status::Deprecated);
        let retired_on = date(
            "retired_on",
            &entry.retired_on,
            entry.status == Status::Retired,
        );
        if let Some(replacement) = &entry.replacement {
            match names.get(replacement.as_str()) {
                None => problem(format!(
                    "replacement \"{replacement}\" is not a model of the catalog"
                )),
                Some(&(_, true)) => problem(format!(
                    "replacement \"{replacement}\" is an alias; name the model id"
                )),
                Some(&(index, false)) if file.models[index].status == Status::Retired => {
                    problem(format!("replacement \"{replacement}\" is retired itself"))
                }
                Some(&(index, false)) if file.models[index].id == entry.id => {
                    problem("replacement is the model itself".into())
                }
                Some(_) => {}
            }
        }
        let mut fallbacks = Vec::with_capacity(entry.fallbacks.len());
        for fallback in &entry.fallbacks {
            match names.get(fallback.as_str()) {
                None => problem(format!(
                    "fallback \"{fallback}\" is not a model of the catalog"
                )),
                Some(&(_, true)) => problem(format!(
                    "fallback \"{fallback}\" is an alias; name the model id"
                )),
                Some(&(index, false)) if file.models[index].status == Status::Retired => {
                    problem(format!("fallback \"{fallback}\" is retired"))
                }
                Some(&(index, false)) if file.models[index].id == entry.id => {
                    problem("a fallback is the model itself".into())
                }
                Some(&(index, false)) => fallbacks.push(index),
            }
        }
        let replacement: Option<Arc<str>> = entry.replacement.as_deref().map(Arc::from);
        let lifecycle = match (entry.status, sunset, retired_on) {
            (Status::Active, _, _) => Lifecycle::Active,
            (Status::Deprecated, Some(sunset), _) => Lifecycle::Deprecated {
                deprecated_on,
                sunset,
                replacement,
            },
            (Status::Retired, _, Some(retired_on)) => Lifecycle::Retired {
                retired_on,
                replacement,
            },
            // A missing date is already a problem.
            _ => Lifecycle::Active,
        };
        let info = ModelInfo::new(
            entry.id.as_str(),
            entry.context_window,
            entry.max_output_tokens,
        )
        .owned_by(entry.owned_by.as_deref().unwrap_or("system"))
        .prices(entry.prices.prices())
        .lifecycle(lifecycle);
        let endpoints = if entry.endpoints.is_empty() {
            vec![Arc::from(CHAT_COMPLETIONS)]
        } else {
            entry
                .endpoints
                .iter()
                .map(|e| Arc::from(e.as_str()))
                .collect()
        };
        let headers = response_headers(&info, now, docs_url.as_deref()).into();
        models.push(Model {
            info,
            aliases: entry
                .aliases
                .iter()
                .map(|a| Arc::from(a.as_str()))
                .collect(),
            endpoints,
            hint: entry.hint.as_deref().map(Arc::from),
            docs_url: entry
                .docs_url
                .as_deref()
                .map(Arc::from)
                .or_else(|| docs_url.clone()),
            created: entry.created,
            fallbacks,
            fallback_list: Fallbacks::default(),
            headers,
        });
    }
    // Now that every model is built.
    let lists: Vec<Fallbacks> = models
        .iter()
        .map(|model| {
            Fallbacks(
                model
                    .fallbacks
                    .iter()
                    .map(|&i| models[i].info.clone())
                    .collect(),
            )
        })
        .collect();
    for (model, list) in models.iter_mut().zip(lists) {
        model.fallback_list = list;
    }
    if problems.is_empty() {
        Ok(ModelCatalog {
            inner: Arc::new(Inner {
                ids: models
                    .iter()
                    .map(|m| Candidate::new(m.info.id.clone()))
                    .collect(),
                aliases: models
                    .iter()
                    .flat_map(|m| m.aliases.iter().map(|a| Candidate::new(a.clone())))
                    .collect(),
                models,
                names,
                docs_url,
            }),
        })
    } else {
        Err(CatalogError { problems })
    }
}

/// Canonical ids are lowercase slugs: `a-z 0-9 . _ - :`, with at most one `/` between a
/// provider and a model.
fn check_slug(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Err("must be lowercase");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:/".contains(&b))
    {
        return Err("may only hold a-z, 0-9, '.', '_', '-', ':' and one '/'");
    }
    if name.matches('/').count() > 1 || name.starts_with('/') || name.ends_with('/') {
        return Err("must be `provider/model` or a plain slug");
    }
    Ok(())
}

fn midnight_utc(date: Date) -> Option<Timestamp> {
    let date = jiff::civil::Date::new(
        i16::try_from(date.year()).ok()?,
        i8::try_from(date.month()).ok()?,
        i8::try_from(date.day()).ok()?,
    )
    .ok()?;
    date.to_zoned(TimeZone::UTC)
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// `x-tollgate-model` for every model; for a deprecated one, `Deprecation` (RFC 9745: when it
/// was deprecated, or when the catalog was loaded if the file does not say), `Sunset`
/// (RFC 8594) and a `Link` to the replacement (`successor-version`) and the docs.
fn response_headers(
    info: &ModelInfo,
    now: Timestamp,
    docs_url: Option<&str>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    if let Ok(value) = HeaderValue::from_str(&info.id) {
        headers.push((X_MODEL, value));
    }
    if let Lifecycle::Deprecated {
        deprecated_on,
        sunset,
        replacement,
    } = &info.lifecycle
    {
        let deprecated_at = deprecated_on.and_then(midnight_utc).unwrap_or(now);
        if let Ok(value) = HeaderValue::from_str(&format!("@{}", deprecated_at.as_second())) {
            headers.push((HeaderName::from_static("deprecation"), value));
        }
        if let Some(sunset) = midnight_utc(*sunset).and_then(|at| {
            jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&at)
                .ok()
        }) && let Ok(value) = HeaderValue::from_str(&sunset)
        {
            headers.push((HeaderName::from_static("sunset"), value));
        }
        let mut links = Vec::new();
        if let Some(replacement) = replacement {
            links.push(format!(
                "</v1/models/{replacement}>; rel=\"successor-version\""
            ));
        }
        if let Some(docs) = docs_url {
            links.push(format!("<{docs}>; rel=\"deprecation\""));
        }
        if !links.is_empty()
            && let Ok(value) = HeaderValue::from_str(&links.join(", "))
        {
            headers.push((http::header::LINK, value));
        }
    }
    headers
}
