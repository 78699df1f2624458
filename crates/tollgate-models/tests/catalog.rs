//! Catalog loading and validation, and the `/v1/models` listing.

use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_core::{Lifecycle, Prices, Principal};
use tollgate_models::{ListModels, ModelCatalog, ModelEntry, PriceEntry, Resolution, Status};
use tower::ServiceExt;

fn entry(id: &str) -> ModelEntry {
    ModelEntry {
        id: id.to_owned(),
        context_window: 1000,
        max_output_tokens: 100,
        ..ModelEntry::default()
    }
}

fn problems(entries: Vec<ModelEntry>) -> Vec<String> {
    ModelCatalog::from_entries(entries).unwrap_err().problems
}

#[test]
fn every_invalid_configuration_is_named() {
    let retired = |id: &str| ModelEntry {
        status: Status::Retired,
        retired_on: Some("2026-01-01".into()),
        ..entry(id)
    };
    let cases: Vec<(Vec<ModelEntry>, Vec<&str>)> = vec![
        (
            vec![entry("GPT-5")],
            vec!["model \"GPT-5\": id \"GPT-5\" must be lowercase"],
        ),
        (
            vec![entry("a b")],
            vec![
                "model \"a b\": id \"a b\" may only hold a-z, 0-9, '.', '_', '-', ':' and one '/'",
            ],
        ),
        (
            vec![entry("a/b/c")],
            vec!["model \"a/b/c\": id \"a/b/c\" must be `provider/model` or a plain slug"],
        ),
        (vec![entry("")], vec!["model \"\": id \"\" is empty"]),
        (
            vec![entry("m"), entry("m")],
            vec!["model \"m\": id \"m\" is already used as a model id"],
        ),
        (
            vec![
                ModelEntry {
                    aliases: vec!["x".into()],
                    ..entry("a")
                },
                ModelEntry {
                    aliases: vec!["x".into()],
                    ..entry("b")
                },
            ],
            vec!["model \"b\": alias \"x\" is already used as an alias"],
        ),
        (
            vec![
                ModelEntry {
                    aliases: vec!["b".into()],
                    ..entry("a")
                },
                entry("b"),
            ],
            vec!["model \"b\": id \"b\" is already used as an alias"],
        ),
        (
            vec![ModelEntry {
                aliases: vec!["Big".into()],
                ..entry("a")
            }],
            vec!["model \"a\": alias \"Big\" must be lowercase"],
        ),
        (
            vec![ModelEntry {
                replacement: Some("nope".into()),
                ..retired("old")
            }],
            vec!["model \"old\": replacement \"nope\" is not a model of the catalog"],
        ),
        (
            vec![
                ModelEntry {
                    replacement: Some("older".into()),
                    ..retired("old")
                },
                retired("older"),
            ],
            vec!["model \"old\": replacement \"older\" is retired itself"],
        ),
        (
            vec![
                ModelEntry {
                    replacement: Some("n".into()),
                    ..retired("old")
                },
                ModelEntry {
                    aliases: vec!["n".into()],
                    ..entry("new")
                },
            ],
            vec!["model \"old\": replacement \"n\" is an alias; name the model id"],
        ),
        (
            vec![
                ModelEntry {
                    fallbacks: vec!["nope".into(), "old".into(), "n".into(), "a".into()],
                    ..entry("a")
                },
                retired("old"),
                ModelEntry {
                    aliases: vec!["n".into()],
                    ..entry("new")
                },
            ],
            vec![
                "model \"a\": fallback \"nope\" is not a model of the catalog",
                "model \"a\": fallback \"old\" is retired",
                "model \"a\": fallback \"n\" is an alias; name the model id",
                "model \"a\": a fallback is the model itself",
            ],
        ),
        (
            vec![ModelEntry {
                status: Status::Retired,
                ..entry("old")
            }],
            vec!["model \"old\": retired_on is required for a retired model"],
        ),
        (
            vec![ModelEntry {
                status: Status::Deprecated,
                ..entry("old")
            }],
            vec!["model \"old\": sunset is required for a deprecated model"],
        ),
        (
            vec![ModelEntry {
                status: Status::Deprecated,
                sunset: Some("2026-13-01".into()),
                ..entry("old")
            }],
            vec!["model \"old\": sunset \"2026-13-01\" is not a date (YYYY-MM-DD)"],
        ),
        (
            vec![ModelEntry {
                max_output_tokens: 2000,
                ..entry("m")
            }],
            vec![
                "model \"m\": max_output_tokens (2000) must be positive and at most the context_window (1000)",
            ],
        ),
        (
            vec![ModelEntry {
                context_window: 0,
                max_output_tokens: 0,
                ..entry("m")
            }],
            vec![
                "model \"m\": context_window must be positive",
                "model \"m\": max_output_tokens (0) must be positive and at most the context_window (0)",
            ],
        ),
        (
            vec![ModelEntry {
                endpoints: vec!["chat".into()],
                ..entry("m")
            }],
            vec!["model \"m\": endpoint \"chat\" is not a path like /v1/chat/completions"],
        ),
        (
            vec![ModelEntry {
                prices: PriceEntry {
                    input: 1_000_000,
                    cached_input: Some(1_000_001),
                    output: 0,
                },
                ..entry("m")
            }],
            vec![
                "model \"m\": prices.cached_input (1000001) must be at most prices.input (1000000)",
            ],
        ),
    ];
    for (entries, expected) in cases {
        assert_eq!(problems(entries), expected);
    }
}

#[test]
fn file_errors_are_reported() {
    let error =
        ModelCatalog::from_toml("[[models]]\nid = 'a'\ncontext_window = 'big'\n").unwrap_err();
    assert!(
        error.problems[0].starts_with("not a valid TOML catalog:"),
        "{error}"
    );
    let error = ModelCatalog::from_json(r#"{"models": [{"id": "a", "context_window": 1, "max_output_tokens": 1, "colour": "red"}]}"#).unwrap_err();
    assert!(
        error.problems[0].contains("unknown field `colour`"),
        "{error}"
    );
    assert!(error.to_string().starts_with("invalid model catalog: "));
}

#[test]
fn a_cached_input_price_is_loaded_and_checked() {
    let catalog = |prices: &str| {
        ModelCatalog::from_toml(&format!(
            "[[models]]\nid = 'm'\ncontext_window = 10\nmax_output_tokens = 10\nprices = {prices}\n"
        ))
    };
    let prices = |catalog: ModelCatalog| catalog.get("m").unwrap().info.prices;
    let cached =
        prices(catalog("{ input = 2500000, cached_input = 250000, output = 10000000 }").unwrap());
    assert_eq!(
        cached,
        Prices::new(2_500_000, 10_000_000).with_cached_input(250_000)
    );
    assert_eq!(cached.cached_input_per_million(), 250_000);
    // As much as the input price, or free, is allowed.
    let same = prices(catalog("{ input = 7, cached_input = 7 }").unwrap());
    assert_eq!(same.cached_input_per_million_field(), Some(7));
    let free = prices(catalog("{ input = 7, cached_input = 0 }").unwrap());
    assert_eq!(free.cached_input_per_million(), 0);
    // Without one, cached tokens cost the input price.
    let plain = prices(catalog("{ input = 7, output = 9 }").unwrap());
    assert_eq!(plain.cached_input_per_million_field(), None);
    assert_eq!(plain.cached_input_per_million(), 7);
    // A negative price is no price at all, and above the input price is a mistake.
    let negative = catalog("{ input = 7, cached_input = -1 }").unwrap_err();
    assert!(
        negative.problems[0].starts_with("not a valid TOML catalog:"),
        "{negative}"
    );
    let above = catalog("{ input = 7, cached_input = 8 }").unwrap_err();
    assert_eq!(
        above.problems,
        ["model \"m\": prices.cached_input (8) must be at most prices.input (7)"]
    );
    let json = ModelCatalog::from_json(
        r#"{"models": [{"id": "m", "context_window": 10, "max_output_tokens": 10, "prices": {"input": 7, "cached_input": 3}}]}"#,
    )
    .unwrap();
    assert_eq!(prices(json).cached_input_per_million(), 3);
}

#[test]
fn toml_and_json_load_the_same_catalog() {
    let toml = ModelCatalog::from_toml(
        r#"
        [[models]]
        id = "openai/gpt-5.4"
        aliases = ["gpt-5.4"]
        owned_by = "openai"
        context_window = 400000
        max_output_tokens = 128000
        prices = { input = 2500000, output = 10000000 }
        status = "deprecated"
        sunset = "2027-01-31"
        "#,
    )
    .unwrap();
    let json = ModelCatalog::from_json(
        r#"{"models": [{"id": "openai/gpt-5.4", "aliases": ["gpt-5.4"], "owned_by": "openai",
            "context_window": 400000, "max_output_tokens": 128000,
            "prices": {"input": 2500000, "output": 10000000}, "status": "deprecated", "sunset": "2027-01-31"}]}"#,
    )
    .unwrap();
    for catalog in [toml, json] {
        let model = catalog.get("openai/gpt-5.4").unwrap();
        assert_eq!(model.info.prices, Prices::new(2_500_000, 10_000_000));
        assert_eq!(&*model.info.owned_by, "openai");
        assert!(
            matches!(model.info.lifecycle, Lifecycle::Deprecated { ref sunset, .. } if sunset.to_string() == "2027-01-31")
        );
        assert!(matches!(
            catalog.resolve("gpt-5.4"),
            Resolution::Found {
                via_alias: true,
                ..
            }
        ));
        assert!(
            catalog.get("gpt-5.4").is_none(),
            "get takes canonical ids only"
        );
    }
}

async fn list(catalog: &ModelCatalog, path: &str, principal: Option<Principal>) -> (u16, Value) {
    let mut request = Request::get(path).body(()).unwrap();
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    let response = ListModels::new(catalog.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn list_models_leaves_retired_out_and_filters_by_principal() {
    let catalog = ModelCatalog::from_entries(vec![
        ModelEntry {
            owned_by: Some("openai".into()),
            created: 1_700_000_000,
            ..entry("a")
        },
        entry("b"),
        ModelEntry {
            status: Status::Retired,
            retired_on: Some("2026-01-01".into()),
            replacement: Some("a".into()),
            ..entry("old")
        },
    ])
    .unwrap();
    let (status, body) = list(&catalog, "/v1/models", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"object": "list", "data": [
            {"id": "a", "object": "model", "created": 1_700_000_000u64, "owned_by": "openai"},
            {"id": "b", "object": "model", "created": 0, "owned_by": "system"}
        ]})
    );
    let (_, body) = list(
        &catalog,
        "/v1/models",
        Some(Principal::new("k", "acct").with_allowed_models(["b"])),
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], "b");

    let (status, body) = list(&catalog, "/v1/models/a", None).await;
    assert_eq!((status, body["id"].as_str()), (200, Some("a")));
    let (status, body) = list(&catalog, "/v1/models/old", None).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("model_not_found"))
    );
    let (status, _) = list(
        &catalog,
        "/v1/models/a",
        Some(Principal::new("k", "acct").with_allowed_models(["b"])),
    )
    .await;
    assert_eq!(status, 404);
}
