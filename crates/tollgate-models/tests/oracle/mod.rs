//! Model resolution and did-you-mean, against the catalog's names: a name resolves exactly
//! when it is an id or an alias, and a suggestion is always one of them.
//!
//! Shared by the tests (`tests/suggestions.rs`) and the fuzz target (`fuzz/`), which includes
//! this file by path.

use std::collections::HashMap;

use tollgate_models::{ModelCatalog, ModelEntry, Resolution};

/// Ids and their aliases: providers, near names and names that differ only in case or
/// punctuation, for the suggestion's every step to have something to find.
const MODELS: &[(&str, &[&str])] = &[
    ("openai/gpt-5.4", &["gpt-5", "latest"]),
    ("openai/gpt-5.4-mini", &["gpt-5-mini"]),
    ("openai/gpt-5.3", &[]),
    ("openai/gpt-4.1", &["gpt-4.1-2025"]),
    ("openai/text-embedding-3-small", &["embed"]),
    ("anthropic/claude-sonnet-4-6", &["sonnet"]),
    ("anthropic/claude-opus-4-6", &["opus"]),
    ("mimo/mimo-v2-pro", &[]),
    ("mimo-v2.5-pro", &[]),
    ("a", &["b"]),
    ("local:llama-3.1-8b", &["llama"]),
];

/// The catalog of [`MODELS`], plus the models of `extra` (each `id alias...`, space-separated)
/// when they make a valid catalog with them.
pub fn catalog(extra: &[&str]) -> ModelCatalog {
    let entry = |id: &str, aliases: Vec<String>| ModelEntry {
        id: id.to_owned(),
        aliases,
        context_window: 8_192,
        max_output_tokens: 1_024,
        ..ModelEntry::default()
    };
    let fixed = || {
        MODELS
            .iter()
            .map(|(id, aliases)| entry(id, aliases.iter().map(|a| (*a).to_owned()).collect()))
    };
    let added = extra.iter().filter_map(|line| {
        let mut names = line.split(' ');
        let id = names.next().filter(|id| !id.is_empty())?;
        Some(entry(id, names.map(str::to_owned).collect()))
    });
    ModelCatalog::from_entries(fixed().chain(added).collect())
        .or_else(|_| ModelCatalog::from_entries(fixed().collect()))
        .expect("the fixed catalog is valid")
}

/// Asserts what `catalog` answers for `requested`: the model that has the name, else a
/// suggestion that is a name of the catalog, never the unknown name itself.
pub fn check_resolution(catalog: &ModelCatalog, requested: &str) {
    // Every name of the catalog: the id it belongs to, and whether it is an alias.
    let mut names: HashMap<&str, (&str, bool)> = HashMap::new();
    for model in catalog.models() {
        names.insert(model.id(), (model.id(), false));
        for alias in &model.aliases {
            names.insert(alias, (model.id(), true));
        }
    }
    let suggestion = catalog.suggest(requested);
    if let Some(suggestion) = suggestion {
        assert!(
            names.contains_key(suggestion),
            "{requested:?}: suggested {suggestion:?}, which the catalog does not name"
        );
    }
    match (catalog.resolve(requested), names.get(requested)) {
        (Resolution::Found { model, via_alias }, Some(&(id, alias))) => {
            assert_eq!((model.id(), via_alias), (id, alias), "{requested:?}");
        }
        (Resolution::NotFound { suggestion: found }, None) => {
            assert_eq!(
                found, suggestion,
                "{requested:?}: resolve and suggest disagree"
            );
            assert_ne!(found, Some(requested), "{requested:?}: suggested itself");
        }
        (Resolution::Found { model, .. }, None) => {
            panic!(
                "{requested:?} resolved to {}, a name it does not have",
                model.id()
            );
        }
        (Resolution::NotFound { .. }, Some((id, _))) => {
            panic!("{requested:?}, a name of {id}, not found");
        }
    }
}
