//! Configuring an [`Upstream`].

use std::fmt;
use std::sync::Arc;

use http::Uri;
use http::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tollgate_core::BodyLimit;

use crate::headers::{HeaderNotAllowed, OutgoingHeaders};
use crate::retry::RetryPolicy;
use crate::service::{Shared, Upstream};
use crate::timeouts::Timeouts;

/// Configures an [`Upstream`]: its provider key, the client headers it forwards and the
/// operator's own, [`Timeouts`], [`RetryPolicy`] and the [`BodyLimit`] of a request body no
/// earlier layer read.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderName;
/// use tollgate_core::BodyLimit;
/// use tollgate_upstream::{RetryBudget, RetryPolicy, Timeouts, Upstream};
///
/// let upstream = Upstream::builder("https://api.example.com/openai/")?
///     .api_key("sk-provider-key")?
///     .header(HeaderName::from_static("openai-organization"), "org-gateway".parse()?)?
///     .timeouts(Timeouts::default().with_first_byte(Duration::from_secs(30)))
///     .retry(RetryPolicy::default().with_budget(RetryBudget::default().with_ratio(0.1)))
///     .body_limit(BodyLimit::default().with_max_bytes(1 << 20))
///     .build();
/// # let _ = upstream;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct UpstreamBuilder {
    base: Uri,
    headers: OutgoingHeaders,
    timeouts: Timeouts,
    retry: RetryPolicy,
    body_limit: BodyLimit,
}

impl Upstream {
    /// Configures an upstream at `base_url` (scheme and authority, and a path prefix if the
    /// API lives under one; the request's own path is appended).
    pub fn builder(base_url: &str) -> Result<UpstreamBuilder, http::uri::InvalidUri> {
        let base: Uri = base_url.trim_end_matches('/').parse()?;
        Ok(UpstreamBuilder {
            headers: OutgoingHeaders::new(&base),
            base,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            body_limit: BodyLimit::default(),
        })
    }
}

impl UpstreamBuilder {
    /// The provider key, sent as `Authorization: Bearer <key>` instead of the client's (and
    /// marked sensitive, so it stays out of `Debug` output).
    ///
    /// A key that cannot go in a header is an error, rather than requests that go out
    /// without a key.
    ///
    /// ```
    /// use tollgate_upstream::Upstream;
    ///
    /// let builder = Upstream::builder("https://api.openai.com")?.api_key("sk-provider-key")?;
    /// assert!(builder.api_key("sk-pasted-with-a-newline\n").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn api_key(mut self, key: &str) -> Result<Self, InvalidApiKey> {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| InvalidApiKey)?;
        value.set_sensitive(true);
        self.headers.set_api_key(value);
        Ok(self)
    }

    /// Forwards the client's `name` header too. By default the provider sees only the client
    /// headers it needs: `content-type`, `accept`, `user-agent`, `openai-beta`,
    /// `idempotency-key` and `x-request-id`; everything else stays behind, OpenAI SDKs'
    /// `x-stainless-*` telemetry included.
    ///
    /// The client's credentials and account (`authorization`, `api-key`, `x-api-key`,
    /// `cookie`, `openai-organization`, `openai-project`) are never forwarded, nor the headers
    /// the upstream client sets itself (`host`, `content-length`, `accept-encoding`, the
    /// hop-by-hop ones): naming one is an error. A header the client's `Connection` header
    /// lists stays behind even when allowed.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tollgate_upstream::Upstream;
    ///
    /// let upstream = Upstream::builder("https://api.example.com")?
    ///     .forward_header(HeaderName::from_static("x-stainless-retry-count"))?
    ///     .build();
    /// # let _ = upstream;
    /// let builder = Upstream::builder("https://api.example.com")?;
    /// assert!(builder.forward_header(http::header::AUTHORIZATION).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward_header(mut self, name: HeaderName) -> Result<Self, HeaderNotAllowed> {
        self.headers.forward(name)?;
        Ok(self)
    }

    /// Sends `name: value` with every request, in place of whatever the client sent under that
    /// name: the gateway's own `openai-organization` or `openai-project`, or a provider
    /// credential such as Azure's `api-key`. The value is marked sensitive, so it stays out of
    /// `Debug` output.
    ///
    /// The headers the upstream client sets itself (`host`, `content-length`,
    /// `accept-encoding`, `authorization`, which [`api_key`](Self::api_key) sets, and the
    /// hop-by-hop ones) cannot be set here.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tollgate_upstream::Upstream;
    ///
    /// let upstream = Upstream::builder("https://api.example.com")?
    ///     .header(HeaderName::from_static("openai-project"), "proj_gateway".parse()?)?
    ///     .build();
    /// # let _ = upstream;
    /// let builder = Upstream::builder("https://api.example.com")?;
    /// assert!(builder.header(http::header::HOST, "evil.example".parse()?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header(
        mut self,
        name: HeaderName,
        value: HeaderValue,
    ) -> Result<Self, HeaderNotAllowed> {
        self.headers.fix(name, value)?;
        Ok(self)
    }

    /// Time limits.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Retries.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Limits for a request body no earlier layer read (a passthrough route's): its size, and
    /// the time it may take to arrive (a 413 or 408 envelope beyond them, before anything is
    /// sent upstream).
    pub fn body_limit(mut self, limit: BodyLimit) -> Self {
        self.body_limit = limit;
        self
    }

    /// Builds the pooled client.
    pub fn build(self) -> Upstream {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.timeouts.connect()));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Upstream {
            shared: Arc::new(Shared {
                client: Client::builder(TokioExecutor::new()).build(https),
                base: self.base,
                headers: self.headers,
                timeouts: self.timeouts,
                retry: self.retry,
                budget: self.retry.budget().tps_budget(),
                body_limit: self.body_limit,
            }),
        }
    }
}

/// A provider key that cannot go in an `Authorization` header: it holds a control character,
/// often a newline read along with it from a file. The message never shows the key.
///
/// ```
/// use tollgate_upstream::Upstream;
///
/// let error = Upstream::builder("https://api.openai.com")?
///     .api_key("sk-secret\r\n")
///     .unwrap_err();
/// assert!(!error.to_string().contains("sk-secret"));
/// # Ok::<(), http::uri::InvalidUri>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidApiKey;

impl fmt::Display for InvalidApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the upstream API key cannot be sent in an HTTP header: it holds a control character",
        )
    }
}

impl std::error::Error for InvalidApiKey {}
