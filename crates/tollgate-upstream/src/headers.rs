//! Header hygiene both ways: the provider sees only the client headers the gateway understood
//! (an allow-list) and the operator's own, and what one connection says stays on it.

use std::fmt;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};
use tollgate_core::TraceContext;
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::trace_context::{TRACEPARENT, TRACESTATE};

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

/// Headers the upstream client writes itself: the host is the base URL's, the HTTP client sets
/// the length, the provider key is `authorization`, and `accept-encoding` stays unset because a
/// compressed answer would hide its usage from the gateway, which reads it from the bytes it
/// forwards.
const OWN: [HeaderName; 4] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::ACCEPT_ENCODING,
    header::AUTHORIZATION,
];

/// The client's credentials and the account it names at the provider: the gateway's own go
/// upstream, never the client's.
const CLIENT_CREDENTIALS: [HeaderName; 6] = [
    header::AUTHORIZATION,
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
    header::COOKIE,
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
];

/// The client headers a provider needs: the body's type, the answer's type, who calls, beta
/// opt-ins, an idempotency key and the request id (to match the provider's logs with the
/// gateway's). OpenAI SDKs' `x-stainless-*` telemetry is not among them.
const FORWARDED_BY_DEFAULT: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
    HeaderName::from_static("idempotency-key"),
    X_REQUEST_ID,
];

/// The headers of every request to the provider: the allowed client headers, the operator's
/// fixed ones, the provider's host and the provider key.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingHeaders {
    forwarded: Vec<HeaderName>,
    fixed: HeaderMap,
    host: Option<HeaderValue>,
    api_key: Option<HeaderValue>,
}

impl OutgoingHeaders {
    /// The headers of requests to `base`, whose `Host` is rendered here once: left to the
    /// HTTP client, it would be formatted again for every request.
    pub(crate) fn new(base: &Uri) -> OutgoingHeaders {
        OutgoingHeaders {
            forwarded: FORWARDED_BY_DEFAULT.to_vec(),
            fixed: HeaderMap::new(),
            host: host_of(base),
            api_key: None,
        }
    }

    pub(crate) fn set_api_key(&mut self, key: HeaderValue) {
        self.api_key = Some(key);
    }

    pub(crate) fn forward(&mut self, name: HeaderName) -> Result<(), HeaderNotAllowed> {
        if CLIENT_CREDENTIALS.contains(&name) {
            return Err(HeaderNotAllowed::new(name, Reason::ClientCredential));
        }
        if OWN.contains(&name) || HOP_BY_HOP.contains(&name) {
            return Err(HeaderNotAllowed::new(name, Reason::Own));
        }
        if !self.forwarded.contains(&name) {
            self.forwarded.push(name);
        }
        Ok(())
    }

    pub(crate) fn fix(
        &mut self,
        name: HeaderName,
        mut value: HeaderValue,
    ) -> Result<(), HeaderNotAllowed> {
        if OWN.contains(&name) || HOP_BY_HOP.contains(&name) {
            return Err(HeaderNotAllowed::new(name, Reason::Own));
        }
        value.set_sensitive(true);
        self.fixed.insert(name, value);
        Ok(())
    }

    /// The headers of a request from a client that sent `client`: the allowed ones (unless
    /// its `Connection` header names them), then the fixed ones in place of the client's, the
    /// provider key, and the request's `trace`.
    pub(crate) fn for_request(
        &self,
        client: &HeaderMap,
        trace: Option<&TraceContext>,
    ) -> HeaderMap {
        let per_connection = connection_listed(client);
        // Room for all of them at once: a map that grows allocates twice again.
        let mut headers = HeaderMap::with_capacity(self.forwarded.len() + self.fixed.len() + 4);
        // One pass over the client's few headers, matched against the short allow-list: a
        // lookup per allowed name would hash each name again.
        for (name, value) in client {
            if self.forwarded.contains(name) && !per_connection.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.fixed {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(host) = &self.host {
            headers.insert(header::HOST, host.clone());
        }
        if let Some(key) = &self.api_key {
            headers.insert(header::AUTHORIZATION, key.clone());
        }
        if let Some(trace) = trace {
            headers.insert(TRACEPARENT, trace.traceparent());
            if let Some(state) = trace.tracestate() {
                headers.insert(TRACESTATE, state.clone());
            }
        }
        headers
    }
}

/// The `Host` of requests to `base`, as the HTTP client would write it: the host, and the port
/// unless it is the scheme's default. None when `base` names no host (the client then fails
/// the request).
fn host_of(base: &Uri) -> Option<HeaderValue> {
    let host = base.host()?;
    let default_port = match base.scheme() {
        Some(scheme) if *scheme == Scheme::HTTPS => 443,
        _ => 80,
    };
    let value = match base.port_u16() {
        Some(port) if port != default_port => HeaderValue::try_from(format!("{host}:{port}")),
        _ => HeaderValue::from_str(host),
    };
    value.ok()
}

/// The names a `Connection` header lists: they describe this connection only.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect()
}

/// Headers of the provider's answer that describe the gateway's own account with it: which
/// organization and project the provider billed (the operator's, under the gateway's key) and
/// the provider's cookies. The client never sees them.
const PROVIDER_ACCOUNT: [HeaderName; 3] = [
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
    header::SET_COOKIE,
];

/// The provider's request id goes back under this name, so that the gateway's own
/// `x-request-id` is the one the client sees and both can be matched in logs.
const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Cleans the provider's response head for the client: hop-by-hop headers and the provider
/// account's headers go, and the provider's `x-request-id` becomes `x-upstream-request-id`.
pub(crate) fn for_client(headers: &mut HeaderMap) {
    // hyper sizes the map for the provider's few headers; the layers on the way out add a dozen.
    headers.reserve(tollgate_core::RESPONSE_HEADER_ROOM);
    // One pass over the provider's few headers finds what goes: a removal per unwanted name
    // would look up a dozen names that are almost never there.
    let mut unwanted: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            HOP_BY_HOP.contains(name) || PROVIDER_ACCOUNT.contains(name) || *name == X_REQUEST_ID
        })
        .cloned()
        .collect();
    if unwanted.is_empty() {
        return;
    }
    if unwanted.contains(&header::CONNECTION) {
        unwanted.extend(connection_listed(headers));
    }
    for name in &unwanted {
        let removed = headers.remove(name);
        if *name == X_REQUEST_ID
            && let Some(id) = removed
        {
            headers.insert(UPSTREAM_REQUEST_ID, id);
        }
    }
}

/// A header an [`UpstreamBuilder`](crate::UpstreamBuilder) refuses to forward from the client
/// or to set: the client's credentials never go upstream, and the headers of the connection,
/// its framing and the provider key are the upstream client's own.
///
/// ```
/// use http::header::{CONTENT_LENGTH, COOKIE};
/// use tollgate_upstream::Upstream;
///
/// let builder = Upstream::builder("https://api.openai.com")?;
/// let error = builder.forward_header(COOKIE).unwrap_err();
/// assert_eq!(error.name(), COOKIE);
/// let builder = Upstream::builder("https://api.openai.com")?;
/// assert!(builder.header(CONTENT_LENGTH, "0".parse()?).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderNotAllowed {
    name: HeaderName,
    reason: Reason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    ClientCredential,
    Own,
}

impl HeaderNotAllowed {
    fn new(name: HeaderName, reason: Reason) -> Self {
        HeaderNotAllowed { name, reason }
    }

    /// The header refused.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl fmt::Display for HeaderNotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match self.reason {
            Reason::ClientCredential => write!(
                f,
                "the client's `{name}` header is never forwarded upstream: it carries the client's credentials or account (set the gateway's own with `UpstreamBuilder::header`, or `api_key` for `authorization`)"
            ),
            Reason::Own => write!(
                f,
                "the `{name}` header is the upstream client's own to set: it describes the connection or the message framing, or carries the provider key (`UpstreamBuilder::api_key`)"
            ),
        }
    }
}

impl std::error::Error for HeaderNotAllowed {}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(base: &str) -> Option<HeaderValue> {
        host_of(&base.parse().unwrap())
    }

    #[test]
    fn the_host_names_the_port_only_when_it_is_not_the_schemes_default() {
        assert_eq!(host("https://api.openai.com").unwrap(), "api.openai.com");
        assert_eq!(
            host("https://api.openai.com:443/v1").unwrap(),
            "api.openai.com"
        );
        assert_eq!(host("http://10.0.0.7:80").unwrap(), "10.0.0.7");
        assert_eq!(host("http://127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(host("https://llm.internal:80").unwrap(), "llm.internal:80");
        assert_eq!(host("http://[::1]:9000").unwrap(), "[::1]:9000");
        assert_eq!(host("/v1"), None);
    }
}
