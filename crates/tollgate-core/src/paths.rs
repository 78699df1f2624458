//! The request paths a layer acts on, and what a request's content type says.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method, Request};

use crate::Endpoint;

/// The paths a layer acts on, matched exactly: no prefix and no pattern, so a path the
/// operator did not list is never mistaken for one that was.
///
/// ```
/// use http::Request;
/// use tollgate_core::Paths;
///
/// let paths = Paths::new(["/v1/chat/completions", "/v1/embeddings"]);
/// assert!(paths.matches("/v1/embeddings"));
/// assert!(!paths.matches("/v1/embeddings/"));
/// assert!(paths.is_post_to(&Request::post("/v1/chat/completions").body(()).unwrap()));
/// assert!(!paths.is_post_to(&Request::get("/v1/chat/completions").body(()).unwrap()));
/// assert!(Paths::chat_completions().matches("/v1/chat/completions"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    // A handful of short paths: a scan beats hashing the request's path.
    paths: Box<[Box<str>]>,
}

impl Paths {
    /// These paths.
    pub fn new<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        Paths {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// `/v1/chat/completions` alone.
    pub fn chat_completions() -> Self {
        Paths::new(["/v1/chat/completions"])
    }

    /// The path of every metered [`Endpoint`]: chat completions, responses, legacy completions
    /// and embeddings.
    ///
    /// ```
    /// use tollgate_core::{Endpoint, Paths};
    ///
    /// let paths = Paths::metered();
    /// assert!(Endpoint::ALL.iter().all(|endpoint| paths.matches(endpoint.path())));
    /// ```
    pub fn metered() -> Self {
        Paths::new(Endpoint::ALL.map(Endpoint::path))
    }

    /// Whether `path` is one of them.
    pub fn matches(&self, path: &str) -> bool {
        self.paths.iter().any(|candidate| **candidate == *path)
    }

    /// Whether `request` is a `POST` to one of them.
    pub fn is_post_to<B>(&self, request: &Request<B>) -> bool {
        request.method() == Method::POST && self.matches(request.uri().path())
    }

    /// The paths, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(|path| &**path)
    }
}

/// Whether the `content-type` is `text/event-stream` (a server-sent event stream), parameters
/// or not.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("content-type", "text/event-stream; charset=utf-8".parse().unwrap());
/// assert!(tollgate_core::is_event_stream(&headers));
/// headers.insert("content-type", "text/event-streams".parse().unwrap());
/// assert!(!tollgate_core::is_event_stream(&headers));
/// ```
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    const EVENT_STREAM: &[u8] = b"text/event-stream";
    // On the bytes: every response asks (three layers), and a `str` view would first check
    // the whole value.
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes().trim_ascii_start();
    match value.split_at_checked(EVENT_STREAM.len()) {
        Some((media_type, rest)) => {
            media_type.eq_ignore_ascii_case(EVENT_STREAM)
                && matches!(rest.first(), None | Some(b';' | b' ' | b'\t'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stream_is_known_by_its_media_type_alone() {
        let is = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(value));
            is_event_stream(&headers)
        };
        assert!(is("text/event-stream"));
        assert!(is("Text/Event-Stream;charset=utf-8"));
        assert!(is(" \ttext/event-stream ; charset=utf-8"));
        assert!(!is("text/event-streaming"));
        assert!(!is("text/event"));
        assert!(!is("application/json"));
        assert!(!is_event_stream(&HeaderMap::new()));
    }
}
