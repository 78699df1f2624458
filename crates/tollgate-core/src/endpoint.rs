//! The OpenAI endpoints a gateway meters.

/// An OpenAI endpoint the gateway meters: a `POST` with a JSON body that names a model, checked
/// against the catalog, counted by the rate limiter and billed by the balance gate.
///
/// The routing layer puts the request's endpoint in its extensions; a request without one was
/// not routed to a metered endpoint.
///
/// ```
/// use tollgate_core::Endpoint;
///
/// assert_eq!(Endpoint::from_path("/v1/responses"), Some(Endpoint::Responses));
/// assert_eq!(Endpoint::from_path("/v1/responses/"), None);
/// assert_eq!(Endpoint::Embeddings.path(), "/v1/embeddings");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/responses`: the Responses API.
    Responses,
    /// `POST /v1/completions`: legacy text completions.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
}

impl Endpoint {
    /// Every metered endpoint.
    pub const ALL: [Endpoint; 4] = [
        Endpoint::ChatCompletions,
        Endpoint::Responses,
        Endpoint::Completions,
        Endpoint::Embeddings,
    ];

    /// Its path, exactly as a request must spell it.
    pub const fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    /// The endpoint at exactly `path`: no trailing slash, no doubled slash, no other spelling.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }
}
