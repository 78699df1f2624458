//! Finding the key in a request, and saying precisely what is wrong when it is not there.

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tollgate_core::{ErrorKind, GatewayError};

/// Where the layer looks for the key, in order.
#[derive(Clone, Debug)]
pub(crate) struct Sources {
    /// Accept `Authorization: <key>` with no scheme.
    pub(crate) raw_authorization: bool,
    /// Further headers that may hold the bare key, such as `x-api-key`.
    pub(crate) headers: Vec<HeaderName>,
    /// A prefix every key has, such as `sk-llmaai-`.
    pub(crate) prefix: Option<Box<str>>,
}

/// Why a request is not authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Missing,
    NoScheme,
    WrongScheme(Option<String>),
    Empty(Option<HeaderName>),
    /// The header came twice: which value a proxy in front or the provider would read is
    /// anyone's guess, so the gateway reads neither.
    Repeated(HeaderName),
    Whitespace,
    Malformed,
    WrongPrefix,
    Unknown,
    Revoked,
    Expired,
}

impl Sources {
    /// The presented key, or why there is none that could be valid.
    pub(crate) fn extract<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, Failure> {
        let key = match single(headers, &AUTHORIZATION)? {
            Some(value) => {
                self.key_in_authorization(value.to_str().map_err(|_| Failure::Malformed)?)?
            }
            None => self.key_in_other_headers(headers)?,
        };
        // The key came through `to_str`, so it is ASCII: an ASCII check is the whole check.
        if key.bytes().any(|byte| byte.is_ascii_whitespace()) {
            return Err(Failure::Malformed);
        }
        match &self.prefix {
            Some(prefix) if !key.starts_with(&**prefix) => Err(Failure::WrongPrefix),
            _ => Ok(key),
        }
    }

    fn key_in_authorization<'h>(&self, value: &'h str) -> Result<&'h str, Failure> {
        let (scheme, rest) = match value.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((scheme, rest)) => (scheme, Some(rest)),
            None => (value, None),
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return match rest {
                None if value.trim().is_empty() => Err(Failure::Empty(None)),
                // One token and no scheme: a raw key, where allowed.
                None if self.raw_authorization => check_whitespace(value),
                None => Err(Failure::NoScheme),
                Some(_) if scheme.is_empty() => Err(Failure::Whitespace),
                Some(_) => Err(Failure::WrongScheme(safe_scheme(scheme))),
            };
        }
        match rest {
            None => Err(Failure::Empty(None)),
            Some(rest) if rest.trim().is_empty() => Err(Failure::Empty(None)),
            // Exactly one space between the scheme and the key, and nothing after it.
            Some(rest) if rest.trim() != rest || value.as_bytes()[scheme.len()] != b' ' => {
                Err(Failure::Whitespace)
            }
            Some(key) => Ok(key),
        }
    }

    fn key_in_other_headers<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, Failure> {
        for name in &self.headers {
            if let Some(value) = single(headers, name)? {
                let value = value.to_str().map_err(|_| Failure::Malformed)?;
                if value.trim().is_empty() {
                    return Err(Failure::Empty(Some(name.clone())));
                }
                return check_whitespace(value);
            }
        }
        Err(Failure::Missing)
    }
}

/// The one `name` header, if any; a repeated one is refused.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, Failure> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => Err(Failure::Repeated(name.clone())),
        (value, _) => Ok(value),
    }
}

fn check_whitespace(key: &str) -> Result<&str, Failure> {
    if key.trim() != key {
        Err(Failure::Whitespace)
    } else {
        Ok(key)
    }
}

/// The scheme, echoed only when it is a plain token: it is the client's input.
fn safe_scheme(scheme: &str) -> Option<String> {
    (scheme.len() <= 20
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then(|| scheme.to_owned())
}

impl Failure {
    /// The 401 envelope: what to fix, never the key.
    pub(crate) fn into_error(self, sources: &Sources) -> GatewayError {
        const HOW: &str = "`Authorization: Bearer YOUR_API_KEY`";
        let message = match self {
            Failure::Missing => {
                let alternatives: Vec<String> =
                    sources.headers.iter().map(|name| format!("`{name}`")).collect();
                if alternatives.is_empty() {
                    format!("Missing API key. Send it in the Authorization header: {HOW}.")
                } else {
                    format!(
                        "Missing API key. Send it in the Authorization header: {HOW} (or in the {} header).",
                        alternatives.join(" or ")
                    )
                }
            }
            Failure::NoScheme => format!(
                "The Authorization header holds a value without the `Bearer` scheme. Send the key as {HOW}."
            ),
            Failure::WrongScheme(Some(scheme)) => format!(
                "The Authorization header uses the `{scheme}` scheme, which this API does not accept. Send the key as {HOW}."
            ),
            Failure::WrongScheme(None) => format!(
                "The Authorization header uses a scheme this API does not accept. Send the key as {HOW}."
            ),
            Failure::Empty(None) => {
                format!("The Authorization header has no API key after `Bearer`. Send the key as {HOW}.")
            }
            Failure::Empty(Some(header)) => format!(
                "The `{header}` header is empty. Send the API key in it, or as {HOW}."
            ),
            Failure::Repeated(header) => format!(
                "The request has more than one `{header}` header. Send the API key once, as {HOW}."
            ),
            Failure::Whitespace => format!(
                "The API key has whitespace around it. Remove the spaces, tabs or line breaks before and after the key: {HOW}, with exactly one space after `Bearer`."
            ),
            Failure::Malformed => "The API key is malformed: it holds spaces or characters that API keys never contain. Copy the key again from where it was issued.".to_owned(),
            Failure::WrongPrefix => format!(
                "The API key is malformed: keys for this API start with `{}`. Check that you are using a key issued for this API.",
                sources.prefix.as_deref().unwrap_or_default()
            ),
            Failure::Unknown => "Invalid API key. Check that it was copied completely, or create a new key.".to_owned(),
            Failure::Revoked => "This API key was revoked. Create a new key.".to_owned(),
            Failure::Expired => "This API key has expired. Create a new key.".to_owned(),
        };
        GatewayError::new(ErrorKind::Auth, message).code("invalid_api_key")
    }
}
