//! The request view parser on arbitrary bytes: no panic, and on a body serde_json reads as an
//! object without duplicate members, every field read as serde_json reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/tollgate-core/tests/oracle/view.rs"]
mod view;

fuzz_target!(|body: &[u8]| {
    view::check_parse(body);
});
