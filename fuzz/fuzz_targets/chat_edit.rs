//! The view's splices (`with_model`, `with_include_usage`, `without_fallbacks`, alone and
//! chained): the body stays JSON, equal to serde_json's reading with the same edit made.
//!
//! Input: `<new model>\0<body>`, or just a body (the new model is then `fuzz/model-1`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/tollgate-core/tests/oracle/view.rs"]
mod view;

#[path = "../../crates/tollgate-core/tests/oracle/edits.rs"]
mod edits;

fuzz_target!(|data: &[u8]| {
    let (model, body) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (String::from_utf8_lossy(&data[..nul]), &data[nul + 1..]),
        None => ("fuzz/model-1".into(), data),
    };
    edits::check_edits(body, &model);
});
