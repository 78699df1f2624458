//! Model resolution and did-you-mean for arbitrary names: no panic, a name resolves exactly
//! when the catalog has it, and a suggestion is always a name of the catalog.
//!
//! Input: the requested name, then optional lines of extra models (`id alias...`) added to
//! the fixed catalog when valid.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate_models::ModelCatalog;

#[path = "../../crates/tollgate-models/tests/oracle/mod.rs"]
mod oracle;

/// The fixed catalog, built once: most inputs are a name alone.
static FIXED: OnceLock<ModelCatalog> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let requested = lines.next().unwrap_or_default();
    let extra: Vec<&str> = lines.collect();
    let catalog = match extra.is_empty() {
        true => FIXED.get_or_init(|| oracle::catalog(&[])).clone(),
        false => oracle::catalog(&extra),
    };
    oracle::check_resolution(&catalog, requested);
});
