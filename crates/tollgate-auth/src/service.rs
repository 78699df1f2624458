use std::time::SystemTime;
use tower_layer::Layer;

use http::Request;
use tollgate_core::admission::{Admission, AdmissionFuture, Carry, Start, Verdict};
use tollgate_core::{BoxError, GatewayError, Telemetry};

use crate::credentials::Failure;
use crate::{BearerAuthLayer, KeyDigest, KeyRecord, KeyStore};

/// The service of [`BearerAuthLayer`]; see there.
#[derive(Debug)]
pub struct BearerAuth<S, K> {
    inner: S,
    admission: BearerAuthLayer<K>,
}

impl<S, K: KeyStore> BearerAuth<S, K> {
    /// Authenticates `inner`'s requests against `store` (see [`BearerAuthLayer::new`]).
    pub fn new(inner: S, store: K) -> Self {
        BearerAuthLayer::new(store).layer(inner)
    }

    /// A [`BearerAuthLayer`] for `store`.
    pub fn layer(store: K) -> BearerAuthLayer<K> {
        BearerAuthLayer::new(store)
    }
}

tollgate_core::admission_service!(BearerAuth<S, K> => BearerAuthLayer<K>);

/// The response future of [`BearerAuth`].
pub type ResponseFuture<S, K, B> = AdmissionFuture<S, BearerAuthLayer<K>, B>;

impl<B, K: KeyStore> Admission<B> for BearerAuthLayer<K> {
    type Ticket = ();
    type Pending = Carry<K::Future, ()>;

    fn start(&self, request: &mut Request<B>) -> Start<(), Self::Pending> {
        let lookup = match self.sources.extract(request.headers()) {
            Ok(key) => self.store.lookup(&KeyDigest::of(key)),
            Err(failure) => {
                return Start::Decided(Verdict::Reject(failure.into_error(&self.sources), ()));
            }
        };
        Start::after(self, request, lookup, ())
    }

    fn resume(
        &self,
        (found, ()): (Result<Option<KeyRecord>, BoxError>, ()),
        request: &mut Request<B>,
    ) -> Verdict<()> {
        let record = match found {
            Ok(Some(record)) => record,
            Ok(None) => return Verdict::Reject(Failure::Unknown.into_error(&self.sources), ()),
            Err(error) => {
                tracing::error!(error = %error, "key store lookup failed");
                let error = GatewayError::state_unavailable(
                    "The API key could not be checked right now. Retry after a short delay.",
                );
                return Verdict::Reject(error, ());
            }
        };
        if record.revoked {
            return Verdict::Reject(Failure::Revoked.into_error(&self.sources), ());
        }
        if record.expires_at.is_some() && record.is_expired(SystemTime::now()) {
            return Verdict::Reject(Failure::Expired.into_error(&self.sources), ());
        }
        tracing::Span::current().record("key_id", record.principal.key_id());
        if let Some(telemetry) = request.extensions().get::<Telemetry>() {
            telemetry.set_principal(&record.principal);
        }
        request.extensions_mut().insert(record.principal);
        Verdict::Admit(())
    }
}
