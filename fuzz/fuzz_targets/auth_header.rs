//! Credential header parsing, through `BearerAuthLayer`: no panic, and a request is admitted
//! (with that key looked up) exactly when a plain reading of the rules finds a key in it.
//!
//! Input: a flags byte (1: raw keys allowed, 2: prefix `sk-` required, 4: `x-api-key` read,
//! 8: `Authorization` sent, 16: `x-api-key` sent), then the `Authorization` value, a NUL, and
//! the `x-api-key` value.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/tollgate-auth/tests/oracle/mod.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, values)) = data.split_first() else {
        return;
    };
    let (authorization, api_key) = match values.iter().position(|&b| b == 0) {
        Some(nul) => (&values[..nul], &values[nul + 1..]),
        None => (values, &b""[..]),
    };
    oracle::check_presented(&oracle::Presented {
        raw_authorization: flags & 1 != 0,
        prefix: (flags & 2 != 0).then_some("sk-"),
        key_header: flags & 4 != 0,
        authorization: (flags & 8 != 0).then_some(authorization),
        api_key: (flags & 16 != 0).then_some(api_key),
    });
});
