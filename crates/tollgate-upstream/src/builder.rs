//! Configuring an [`Upstream`].

use std::fmt;
use std::sync::Arc;

use http::Uri;
use http::header::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tollgate_core::BodyLimit;

use crate::retry::RetryPolicy;
use crate::service::{Shared, Upstream};
use crate::timeouts::Timeouts;

/// Configures an [`Upstream`]: its provider key, [`Timeouts`], [`RetryPolicy`] and the
/// [`BodyLimit`] of a request body no earlier layer read.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::BodyLimit;
/// use tollgate_upstream::{RetryBudget, RetryPolicy, Timeouts, Upstream};
///
/// let upstream = Upstream::builder("https://api.example.com/openai/")?
///     .api_key("sk-provider-key")?
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
    api_key: Option<HeaderValue>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    body_limit: BodyLimit,
}

impl Upstream {
    /// Configures an upstream at `base_url` (scheme and authority, and a path prefix if the
    /// API lives under one; the request's own path is appended).
    pub fn builder(base_url: &str) -> Result<UpstreamBuilder, http::uri::InvalidUri> {
        Ok(UpstreamBuilder {
            base: base_url.trim_end_matches('/').parse()?,
            api_key: None,
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
        self.api_key = Some(value);
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

    /// Limits for a request body no earlier layer read.
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
                api_key: self.api_key,
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
