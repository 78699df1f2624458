//! The SSE parser on a stream split at arbitrary chunk boundaries: the same events (and
//! `retry`, and end state) as the unsplit stream, and the same again byte by byte.
//!
//! Input: a count `n` (the first byte, mod 16), `n` chunk lengths (a byte each, plus one),
//! then the stream, which the last chunk ends.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/tollgate-sse/tests/oracle/mod.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (lengths, stream) = rest.split_at(count);
    let lengths: Vec<usize> = lengths.iter().map(|&b| usize::from(b) + 1).collect();
    oracle::check_splits(stream, &lengths);
});
