//! Model resolution on a 1,000-model catalog: exact hit, alias, miss with and without a
//! suggestion.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_models::{ModelCatalog, ModelEntry, Resolution};

fn catalog() -> ModelCatalog {
    let entries = (0..1_000)
        .map(|n| ModelEntry {
            id: format!("provider-{}/model-{n:04}-instruct", n % 20),
            aliases: vec![format!("m{n:04}")],
            context_window: 128_000,
            max_output_tokens: 8_192,
            ..ModelEntry::default()
        })
        .collect();
    ModelCatalog::from_entries(entries).unwrap()
}

fn bench(c: &mut Criterion) {
    let catalog = catalog();
    assert!(matches!(
        catalog.resolve("provider-3/model-0503-instruct"),
        Resolution::Found {
            via_alias: false,
            ..
        }
    ));
    assert!(matches!(
        catalog.resolve("m0503"),
        Resolution::Found {
            via_alias: true,
            ..
        }
    ));
    assert!(matches!(
        catalog.resolve("provider-3/model-0503-instrct"),
        Resolution::NotFound {
            suggestion: Some(_)
        }
    ));
    assert!(matches!(
        catalog.resolve("PROVIDER-3/MODEL-0503-INSTRUCT"),
        Resolution::NotFound {
            suggestion: Some(_)
        }
    ));
    assert!(matches!(
        catalog.resolve("something-else-entirely"),
        Resolution::NotFound { suggestion: None }
    ));

    let mut group = c.benchmark_group("resolve_1000_models");
    group.bench_function("exact id", |b| {
        b.iter(|| black_box(catalog.resolve(black_box("provider-3/model-0503-instruct"))))
    });
    group.bench_function("alias", |b| {
        b.iter(|| black_box(catalog.resolve(black_box("m0503"))))
    });
    group.bench_function("miss, case-insensitive suggestion", |b| {
        b.iter(|| black_box(catalog.resolve(black_box("PROVIDER-3/MODEL-0503-INSTRUCT"))))
    });
    group.bench_function("miss, edit-distance suggestion", |b| {
        b.iter(|| black_box(catalog.resolve(black_box("provider-3/model-0503-instrct"))))
    });
    group.bench_function("miss, no suggestion", |b| {
        b.iter(|| black_box(catalog.resolve(black_box("something-else-entirely"))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
