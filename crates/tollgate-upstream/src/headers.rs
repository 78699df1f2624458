//! Header hygiene both ways: what one connection says stays on it, and the client's key never
//! reaches the provider.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers, and those the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&listed) {
        headers.remove(name);
    }
}

/// The client's headers as the upstream should see them: no hop-by-hop, no client key, no
/// host or length (the client sets them), no `accept-encoding` (a compressed answer would hide
/// its usage from the gateway), and the provider key.
pub(crate) fn forwarded_headers(client: &HeaderMap, api_key: Option<&HeaderValue>) -> HeaderMap {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    // No compressed answers: the gateway reads usage from the bytes it forwards.
    for name in [
        header::AUTHORIZATION,
        HeaderName::from_static("x-api-key"),
        header::HOST,
        header::CONTENT_LENGTH,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(name);
    }
    if let Some(key) = api_key {
        headers.insert(header::AUTHORIZATION, key.clone());
    }
    headers
}
