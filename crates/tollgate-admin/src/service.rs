//! `AdminService`: the routes, the admin key check, and each operation.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_auth::{KeyDigest, KeyRecord};
use tollgate_core::{BoxError, ErrorKind, GatewayError, Principal, Rate, SpendCap};
use tower_service::Service;

use crate::store::{AccountAdmin, KeyAdmin};

/// The largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// What a reload hook returns: a summary, or why nothing changed.
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

type Reload = Arc<dyn Fn() -> ReloadFuture + Send + Sync>;

/// An admin API for a running gateway: issue, list, change and revoke API keys, top up
/// accounts and read their balance and open reservations, and reload the configuration. JSON
/// in and out; errors in the gateway's envelope. Every call needs an admin key
/// (`Authorization: Bearer ...`, compared as a SHA-256 digest in constant time) and is logged
/// with that admin key's id, never the key.
///
/// Mount it where you like (the example gateway serves it on a listener of its own):
///
/// | call | does |
/// |---|---|
/// | `GET /admin/keys` | every key: id, account, models, limits, revoked (never a secret) |
/// | `POST /admin/keys` `{"id","account","models"?,"requests_per_minute"?,"tokens_per_minute"?,"spend_caps"?}` | issues a key: `201`, the plaintext `key` returned this once (only its digest is stored) |
/// | `PATCH /admin/keys/{id}` `{"models"?,"requests_per_minute"?,"tokens_per_minute"?,"spend_caps"?}` | changes a key's models, limits and spend caps (`"5000000/month"`; `null` removes one) |
/// | `POST /admin/keys/{id}/revoke` | revokes a key, on every replica at once |
/// | `GET /admin/accounts/{id}` | the balance and the open reservations |
/// | `POST /admin/accounts/{id}/top-up` `{"amount"}` | adds micro-units, available to the very next request |
/// | `POST /admin/reload` | reloads the configuration (the hook given to [`on_reload`](AdminService::on_reload)) |
///
/// ```
/// use http::Request;
/// use tollgate_admin::AdminService;
/// use tollgate_auth::InMemoryKeyStore;
/// use tollgate_balance::InMemoryLedger;
/// use tower::ServiceExt;
///
/// # tokio_test::block_on(async {
/// let admin = AdminService::new(InMemoryKeyStore::new(), InMemoryLedger::new())
///     .admin_key("ops", "adm-secret-0123456789");
/// let request = Request::post("/admin/accounts/acct_1/top-up")
///     .header("authorization", "Bearer adm-secret-0123456789")
///     .body(http_body_util::Full::new(bytes::Bytes::from(r#"{"amount": 5000000}"#)))
///     .unwrap();
/// let response = admin.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// ```
pub struct AdminService<K, L> {
    shared: Arc<Shared<K, L>>,
}

#[derive(Clone)]
struct Shared<K, L> {
    keys: K,
    ledger: L,
    admins: Vec<(Arc<str>, KeyDigest)>,
    key_prefix: String,
    reload: Option<Reload>,
}

impl<K, L> Clone for AdminService<K, L> {
    fn clone(&self) -> Self {
        AdminService {
            shared: self.shared.clone(),
        }
    }
}

impl<K, L> fmt::Debug for AdminService<K, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let admins: Vec<&str> = self.shared.admins.iter().map(|(id, _)| &**id).collect();
        f.debug_struct("AdminService")
            .field("admins", &admins)
            .field("key_prefix", &self.shared.key_prefix)
            .field("reload", &self.shared.reload.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: KeyAdmin + Clone, L: AccountAdmin + Clone> AdminService<K, L> {
    /// Administers `keys` and `ledger`. No admin key yet: every call is refused until
    /// [`admin_key`](AdminService::admin_key) adds one.
    pub fn new(keys: K, ledger: L) -> Self {
        AdminService {
            shared: Arc::new(Shared {
                keys,
                ledger,
                admins: Vec::new(),
                key_prefix: "sk-".to_owned(),
                reload: None,
            }),
        }
    }

    /// Accepts `key` as an admin key, logged as `id`.
    pub fn admin_key(self, id: impl Into<Arc<str>>, key: &str) -> Self {
        self.admin_key_digest(id, KeyDigest::of(key))
    }

    /// Accepts the admin key whose SHA-256 digest is `digest` (so the key itself need not be
    /// in any file), logged as `id`.
    pub fn admin_key_digest(self, id: impl Into<Arc<str>>, digest: KeyDigest) -> Self {
        self.with(|shared| shared.admins.push((id.into(), digest)))
    }

    /// The prefix of the API keys it issues (`sk-` by default; the gateway's
    /// `required_prefix`, if it has one).
    pub fn key_prefix(self, prefix: impl Into<String>) -> Self {
        self.with(|shared| shared.key_prefix = prefix.into())
    }

    /// What `POST /admin/reload` runs.
    pub fn on_reload<F, Fut>(self, reload: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let reload: Reload = Arc::new(move || Box::pin(reload()));
        self.with(|shared| shared.reload = Some(reload))
    }

    fn with(self, change: impl FnOnce(&mut Shared<K, L>)) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        change(&mut shared);
        AdminService {
            shared: Arc::new(shared),
        }
    }
}

impl<K, L, B> Service<Request<B>> for AdminService<K, L>
where
    K: KeyAdmin,
    L: AccountAdmin,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let Some(admin) = shared.admin(&request) else {
                tracing::warn!(%method, %path, "admin call refused: no valid admin key");
                let error = GatewayError::new(
                    ErrorKind::Auth,
                    "This admin API needs an admin key: Authorization: Bearer <admin key>.",
                )
                .code("invalid_admin_key");
                return Ok(error.into_response());
            };
            let answer = shared.answer(&method, &path, request.into_body()).await;
            let response = match answer {
                Ok((status, body)) => json_response(status, &body),
                Err(error) => error.into_response(),
            };
            tracing::info!(admin = %admin, %method, %path, status = response.status().as_u16(), "admin call");
            Ok(response)
        })
    }
}

type Answer = Result<(StatusCode, Value), GatewayError>;

impl<K: KeyAdmin, L: AccountAdmin> Shared<K, L> {
    /// The id of the admin key the request presents, if it is one. Every configured key is
    /// compared (in constant time each), so timing tells nothing of which.
    fn admin<B>(&self, request: &Request<B>) -> Option<Arc<str>> {
        let presented = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
        let token = presented.strip_prefix("Bearer ")?.trim();
        let digest = KeyDigest::of(token);
        let mut found = None;
        for (id, admin) in &self.admins {
            if *admin == digest {
                found = Some(id.clone());
            }
        }
        found
    }

    async fn answer<B>(&self, method: &Method, path: &str, body: B) -> Answer
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (segments.as_slice(), method) {
            (["admin", "keys"], &Method::GET) => self.list_keys().await,
            (["admin", "keys"], &Method::POST) => self.create_key(read(body).await?).await,
            (["admin", "keys", id], &Method::PATCH) => self.change_key(id, read(body).await?).await,
            (["admin", "keys", id, "revoke"], &Method::POST) => self.revoke_key(id).await,
            (["admin", "accounts", id], &Method::GET) => self.account(id).await,
            (["admin", "accounts", id, "top-up"], &Method::POST) => {
                self.top_up(id, read(body).await?).await
            }
            (["admin", "reload"], &Method::POST) => self.reload().await,
            (["admin", "keys"], _) => Err(not_allowed(method, path, &[Method::GET, Method::POST])),
            (["admin", "keys", _], _) => Err(not_allowed(method, path, &[Method::PATCH])),
            (["admin", "keys", _, "revoke"], _)
            | (["admin", "accounts", _, "top-up"], _)
            | (["admin", "reload"], _) => Err(not_allowed(method, path, &[Method::POST])),
            (["admin", "accounts", _], _) => Err(not_allowed(method, path, &[Method::GET])),
            _ => Err(GatewayError::unknown_route(method, path)),
        }
    }

    async fn list_keys(&self) -> Answer {
        let records = self.keys.records().await.map_err(unavailable)?;
        let data: Vec<Value> = records.iter().map(|(_, record)| key_json(record)).collect();
        Ok((StatusCode::OK, json!({ "object": "list", "data": data })))
    }

    async fn create_key(&self, body: Value) -> Answer {
        let new: NewKey = parse(body)?;
        if new.id.trim().is_empty() || new.account.trim().is_empty() {
            return Err(invalid("`id` and `account` must not be empty.", "id"));
        }
        let records = self.keys.records().await.map_err(unavailable)?;
        if records.iter().any(|(_, r)| r.principal.key_id() == new.id) {
            return Err(invalid(
                format!("A key with id \"{}\" exists.", new.id),
                "id",
            ));
        }
        let principal = limits(
            Principal::new(new.id.as_str(), new.account.as_str()),
            new.models,
            new.requests_per_minute,
            new.tokens_per_minute,
        )?
        .with_spend_caps(spend_caps(new.spend_caps.unwrap_or_default())?);
        let key = self.new_key().map_err(|error| {
            tracing::error!(error = %error, "no randomness for a new key");
            GatewayError::internal()
        })?;
        let record = KeyRecord::new(principal);
        self.keys
            .store(KeyDigest::of(&key), record.clone())
            .await
            .map_err(unavailable)?;
        let mut view = key_json(&record);
        view["key"] = Value::from(key);
        Ok((StatusCode::CREATED, view))
    }

    async fn change_key(&self, id: &str, body: Value) -> Answer {
        let change: KeyChange = parse(body)?;
        let (digest, record) = self.find(id).await?;
        let principal = &record.principal;
        let models = match change.models {
            Some(models) => models,
            None => principal
                .allowed_models()
                .map(|models| models.iter().map(|m| m.to_string()).collect()),
        };
        let per_minute = |rate: Option<Rate>| {
            rate.filter(|rate| rate.period() == Duration::from_secs(60))
                .map(|rate| rate.amount().get())
        };
        let requests = change
            .requests_per_minute
            .unwrap_or_else(|| per_minute(principal.request_quota()));
        let tokens = change
            .tokens_per_minute
            .unwrap_or_else(|| per_minute(principal.token_quota()));
        let caps = match change.spend_caps {
            Some(caps) => spend_caps(caps.unwrap_or_default())?,
            None => principal.spend_caps().to_vec(),
        };
        let fresh = Principal::new(principal.key_id(), principal.account_id());
        let mut changed = record.clone();
        changed.principal = limits(fresh, models, requests, tokens)?.with_spend_caps(caps);
        self.keys
            .store(digest, changed.clone())
            .await
            .map_err(unavailable)?;
        Ok((StatusCode::OK, key_json(&changed)))
    }

    async fn revoke_key(&self, id: &str) -> Answer {
        let (digest, record) = self.find(id).await?;
        let revoked = record.revoked();
        self.keys
            .store(digest, revoked.clone())
            .await
            .map_err(unavailable)?;
        Ok((StatusCode::OK, key_json(&revoked)))
    }

    async fn account(&self, id: &str) -> Answer {
        let balance = self
            .ledger
            .balance(id)
            .await
            .map_err(|e| unavailable(e.into()))?;
        let held = self.ledger.held(id).await.map_err(unavailable)?;
        let reservations: Vec<Value> = held
            .iter()
            .map(|held| json!({ "id": held.id.to_string(), "amount": held.amount }))
            .collect();
        Ok((
            StatusCode::OK,
            json!({ "object": "account", "id": id, "balance": balance, "reservations": reservations }),
        ))
    }

    async fn top_up(&self, id: &str, body: Value) -> Answer {
        let top_up: TopUp = parse(body)?;
        if top_up.amount == 0 {
            return Err(invalid(
                "`amount` must be a positive number of micro-units.",
                "amount",
            ));
        }
        let balance = self
            .ledger
            .top_up(id, top_up.amount)
            .await
            .map_err(|e| unavailable(e.into()))?;
        Ok((
            StatusCode::OK,
            json!({ "object": "account", "id": id, "balance": balance }),
        ))
    }

    async fn reload(&self) -> Answer {
        let Some(reload) = &self.reload else {
            return Err(GatewayError::new(
                ErrorKind::UnknownRoute,
                "This gateway has nothing to reload.",
            )
            .code("unknown_route"));
        };
        match reload().await {
            Ok(summary) => Ok((
                StatusCode::OK,
                json!({ "reloaded": true, "summary": summary }),
            )),
            Err(reasons) => Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "The configuration was not reloaded; the previous one still serves: {reasons}"
                ),
            )
            .code("invalid_configuration")),
        }
    }

    async fn find(&self, id: &str) -> Result<(KeyDigest, KeyRecord), GatewayError> {
        let records = self.keys.records().await.map_err(unavailable)?;
        records
            .into_iter()
            .find(|(_, record)| record.principal.key_id() == id)
            .ok_or_else(|| {
                GatewayError::new(ErrorKind::NotFound, format!("No key has the id \"{id}\"."))
                    .code("key_not_found")
            })
    }

    /// A new API key: the prefix and 48 hexadecimal digits of the operating system's
    /// randomness (192 bits).
    fn new_key(&self) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)?;
        let mut key = self.key_prefix.clone();
        for byte in bytes {
            key.push_str(&format!("{byte:02x}"));
        }
        Ok(key)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    id: String,
    account: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    requests_per_minute: Option<u64>,
    #[serde(default)]
    tokens_per_minute: Option<u64>,
    #[serde(default)]
    spend_caps: Option<Vec<String>>,
}

/// A field absent: unchanged; `null`: removed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyChange {
    #[serde(default, deserialize_with = "present")]
    models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    requests_per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    tokens_per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    spend_caps: Option<Option<Vec<String>>>,
}

/// A field that is present, `null` included.
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    amount: u64,
}

fn limits(
    mut principal: Principal,
    models: Option<Vec<String>>,
    requests: Option<u64>,
    tokens: Option<u64>,
) -> Result<Principal, GatewayError> {
    if let Some(models) = models {
        principal = principal.with_allowed_models(models);
    }
    if let Some(requests) = requests {
        let rate = Rate::per_minute(requests).map_err(|_| {
            invalid(
                "`requests_per_minute` must be positive.",
                "requests_per_minute",
            )
        })?;
        principal = principal.with_request_quota(rate);
    }
    if let Some(tokens) = tokens {
        let rate = Rate::per_minute(tokens)
            .map_err(|_| invalid("`tokens_per_minute` must be positive.", "tokens_per_minute"))?;
        principal = principal.with_token_quota(rate);
    }
    Ok(principal)
}

fn spend_caps(caps: Vec<String>) -> Result<Vec<SpendCap>, GatewayError> {
    caps.iter()
        .map(|cap| {
            cap.parse()
                .map_err(|error| invalid(format!("Spend cap {cap:?}: {error}."), "spend_caps"))
        })
        .collect()
}

/// A key as the admin API shows it: never its secret.
fn key_json(record: &KeyRecord) -> Value {
    let principal = &record.principal;
    let quota = |rate: Option<Rate>| match rate {
        None => Value::Null,
        Some(rate) if rate.period() == Duration::from_secs(60) && rate.burst() == rate.amount() => {
            Value::from(rate.amount().get())
        }
        Some(rate) => json!({
            "amount": rate.amount().get(),
            "period_ms": rate.period().as_millis() as u64,
            "burst": rate.burst().get(),
        }),
    };
    let models = principal
        .allowed_models()
        .map(|models| models.iter().map(|m| m.to_string()).collect::<Vec<_>>());
    json!({
        "object": "api_key",
        "id": principal.key_id(),
        "account": principal.account_id(),
        "models": models,
        "requests_per_minute": quota(principal.request_quota()),
        "tokens_per_minute": quota(principal.token_quota()),
        "spend_caps": principal.spend_caps().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "revoked": record.revoked,
    })
}

async fn read<B>(body: B) -> Result<Value, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            GatewayError::new(
                ErrorKind::RequestTooLarge,
                format!("An admin request body is at most {MAX_BODY} bytes."),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|error| {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("The body is not valid JSON: {error}."),
        )
    })
}

fn parse<T: for<'de> Deserialize<'de>>(body: Value) -> Result<T, GatewayError> {
    serde_json::from_value(body).map_err(|error| {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("The body does not fit this call: {error}."),
        )
    })
}

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidRequest, message.into()).param(param)
}

fn not_allowed(method: &Method, path: &str, allowed: &[Method]) -> GatewayError {
    GatewayError::method_not_allowed(method, path, allowed)
}

fn unavailable(error: BoxError) -> GatewayError {
    tracing::error!(error = %error, "admin store failed");
    GatewayError::state_unavailable(
        "The key store or the ledger could not be reached. Retry after a short delay.",
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
