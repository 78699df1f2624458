use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use http::{Request, Response};
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::{ChatRequest, ModelInfo, Principal, PromptTokens};
use tollgate_sse::SseObservers;
use tower_service::Service;

use crate::accounting::{Accountant, RecordBase};
use crate::future::{Pending, ResponseFuture, reject};
use crate::layer::Config;
use crate::{Ledger, ResponseBody};

/// The service of [`BalanceGateLayer`](crate::BalanceGateLayer); see there.
pub struct BalanceGate<S, L> {
    inner: S,
    config: Arc<Config<L>>,
}

impl<S: Clone, L> Clone for BalanceGate<S, L> {
    fn clone(&self) -> Self {
        BalanceGate {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: std::fmt::Debug, L> std::fmt::Debug for BalanceGate<S, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalanceGate")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, L> BalanceGate<S, L> {
    pub(crate) fn from_config(inner: S, config: Arc<Config<L>>) -> Self {
        BalanceGate { inner, config }
    }
}

impl<S, L, ReqBody, ResBody> Service<Request<ReqBody>> for BalanceGate<S, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    L: Ledger,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tollgate_core::BoxError>,
{
    type Response = Response<ResponseBody<ResBody, L>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, L, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let extensions = request.extensions();
        let (Some(principal), Some(model)) =
            (extensions.get::<Principal>(), extensions.get::<ModelInfo>())
        else {
            return ResponseFuture::unbilled(self.inner.call(request));
        };
        let chat = extensions.get::<ChatRequest>();
        let prompt = extensions
            .get::<PromptTokens>()
            .map(|tokens| tokens.value())
            .or_else(|| chat.map(|chat| chat.prompt_bytes() as u64))
            .unwrap_or(0);
        let completion = chat
            .and_then(|chat| chat.completion_budget(Some(model)))
            .unwrap_or(model.max_output_tokens);
        let estimate = model.prices.cost(prompt, completion);
        let account = principal.account_id_shared().clone();
        let pending = Pending {
            accountant: Accountant {
                ledger: self.config.ledger.clone(),
                reservation: None,
                prices: model.prices,
                prompt_estimate: prompt,
                policy: self.config.policy,
                sink: self.config.sink.clone(),
                record: RecordBase {
                    request_id: request.headers().get(X_REQUEST_ID).cloned(),
                    key_id: principal.key_id_shared().clone(),
                    account: account.clone(),
                    model: model.id.clone(),
                    status: 0,
                },
                started: Instant::now(),
            },
            balance_header: self.config.balance_header,
            observers: extensions.get::<SseObservers>().cloned(),
        };
        let mut reserve = self.config.ledger.reserve(&account, estimate);
        // The in-memory ledger answers at once: go straight on without parking the request.
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(result) = Pin::new(&mut reserve).poll(&mut cx) {
            return match result {
                Ok(reservation) => {
                    let mut pending = pending;
                    pending.accountant.reservation = Some(reservation);
                    ResponseFuture::billed(self.inner.call(request), pending)
                }
                Err(error) => ResponseFuture::rejected(reject(error)),
            };
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::reserving(reserve, request, inner, pending)
    }
}
