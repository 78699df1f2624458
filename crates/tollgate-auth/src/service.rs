use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tollgate_core::ResponseBody;
use tower_service::Service;

use crate::credentials::Sources;
use crate::future::ResponseFuture;
use crate::{KeyDigest, KeyStore};

/// The service of [`BearerAuthLayer`](crate::BearerAuthLayer); see there.
#[derive(Debug)]
pub struct BearerAuth<S, K> {
    inner: S,
    store: Arc<K>,
    sources: Arc<Sources>,
}

impl<S: Clone, K> Clone for BearerAuth<S, K> {
    fn clone(&self) -> Self {
        BearerAuth {
            inner: self.inner.clone(),
            store: self.store.clone(),
            sources: self.sources.clone(),
        }
    }
}

impl<S, K> BearerAuth<S, K> {
    pub(crate) fn from_parts(inner: S, store: Arc<K>, sources: Arc<Sources>) -> Self {
        BearerAuth {
            inner,
            store,
            sources,
        }
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyStore,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, K::Future, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let key = match self.sources.extract(request.headers()) {
            Ok(key) => key,
            Err(failure) => return ResponseFuture::reject(failure, self.sources.clone()),
        };
        let lookup = self.store.lookup(&KeyDigest::of(key));
        // The ready service handles this request; its clone stays for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::lookup(lookup, request, inner, self.sources.clone())
    }
}
