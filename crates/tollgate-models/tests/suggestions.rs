//! Resolution and did-you-mean against the catalog's names (tests/oracle): names near and far,
//! in other cases and scripts, and catalogs with added models. The fuzz target `model_suggest`
//! (fuzz/) checks arbitrary names.

mod oracle;

use oracle::{catalog, check_resolution};

const NAMES: &[&str] = &[
    "",
    "a",
    "A",
    "b",
    "c",
    "openai/gpt-5.4",
    "gpt-5.4",
    "GPT-5.4",
    "gpt-5.4-mini",
    "gpt-5",
    "GPT-5",
    "gpt-4.2",
    "gtp-5.4",
    "claude-sonet-4-6",
    "anthropic/claude-sonnet-4-6",
    "sonnet",
    "SONNET",
    "opus/",
    "/gpt-5.4",
    "openai/",
    "mimo-v2-pro",
    "MIMO-V2.5-PRO",
    "llama",
    "local:llama-3.1-8b",
    "gpt-5.4\u{130}",
    "ǅ",
    "\u{0}",
    "ẞ",
    "😀",
];

#[test]
fn names_resolve_exactly_and_suggestions_are_names_of_the_catalog() {
    let catalogs = [
        catalog(&[]),
        catalog(&[
            "mymodel-1",
            "vendor/gpt-5.4 my-alias",
            "other/a",
            "x/mimo-v2-pro",
        ]),
    ];
    let long = "x".repeat(140);
    for catalog in &catalogs {
        for name in NAMES.iter().copied().chain([long.as_str()]) {
            check_resolution(catalog, name);
            check_resolution(catalog, &name.to_uppercase());
            check_resolution(catalog, &format!("{name}x"));
        }
    }
}

#[test]
fn an_invalid_added_model_leaves_the_fixed_catalog() {
    assert_eq!(catalog(&["Not A Slug"]).len(), catalog(&[]).len());
    assert_eq!(catalog(&["new-model"]).len(), catalog(&[]).len() + 1);
}
