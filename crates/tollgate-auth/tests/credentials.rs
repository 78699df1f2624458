//! Where the layer finds the key, against the rules written plainly (tests/oracle): headers
//! that sit on the edges of the rules, and what the fuzz target `auth_header` (fuzz/) found.

mod oracle;

use oracle::{Presented, check_presented, layer_outcome, reference_key};

const PLAIN: Presented<'static> = Presented {
    raw_authorization: false,
    prefix: None,
    key_header: false,
    authorization: None,
    api_key: None,
};

#[test]
fn an_empty_raw_authorization_is_refused_before_any_lookup() {
    // fuzz auth_header: with raw keys allowed, an empty `Authorization` was looked up as the
    // key "".
    let presented = Presented {
        raw_authorization: true,
        authorization: Some(b""),
        ..PLAIN
    };
    assert_eq!(reference_key(&presented), None);
    assert_eq!(
        layer_outcome(&presented).map(|(admitted, digest)| (admitted, digest.is_some())),
        Some((false, false))
    );
}

#[test]
fn headers_on_the_edges_of_the_rules_are_read_as_the_rules_say() {
    let values: &[&[u8]] = &[
        b"",
        b" ",
        b"Bearer",
        b"bearer",
        b"Bearer ",
        b"Bearer sk-a",
        b"BEARER sk-a",
        b"bearer sk-a",
        b"Bearer  sk-a",
        b"Bearer sk-a ",
        b" Bearer sk-a",
        b"Bearer\tsk-a",
        b"Bearer sk a",
        b"Bearersk-a",
        b"Basic dXNlcjpwYXNz",
        b"sk-a",
        b"a",
        b"Bearer caf\xc3\xa9",
        b"Bearer \x7f",
        b"Bearer sk-\xff",
    ];
    for flags in 0..32u8 {
        for authorization in values {
            for api_key in values {
                check_presented(&Presented {
                    raw_authorization: flags & 1 != 0,
                    prefix: (flags & 2 != 0).then_some("sk-"),
                    key_header: flags & 4 != 0,
                    authorization: (flags & 8 != 0).then_some(*authorization),
                    api_key: (flags & 16 != 0).then_some(*api_key),
                });
            }
        }
    }
}
