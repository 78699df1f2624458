use std::time::Instant;
use tower_layer::Layer;

use http::Request;
use tollgate_core::admission::{Admission, AdmissionFuture, Carry, Start, Verdict};
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::{Endpoint, ModelInfo, Principal, TokenEstimate};
use tollgate_sse::SseObservers;

use crate::accounting::{Accountant, RecordBase};
use crate::future::{Billing, Hold, reject};
use crate::{BalanceGateLayer, Ledger, LedgerError, Reservation, ReservationId};

/// The service of [`BalanceGateLayer`]; see there.
#[derive(Debug)]
pub struct BalanceGate<S, L> {
    inner: S,
    admission: BalanceGateLayer<L>,
}

impl<S, L: Ledger> BalanceGate<S, L> {
    /// Gates `inner`'s requests on `ledger`'s balances (see [`BalanceGateLayer::new`]).
    pub fn new(inner: S, ledger: L) -> Self {
        BalanceGateLayer::new(ledger).layer(inner)
    }

    /// A [`BalanceGateLayer`] on `ledger`.
    pub fn layer(ledger: L) -> BalanceGateLayer<L> {
        BalanceGateLayer::new(ledger)
    }
}

tollgate_core::admission_service!(BalanceGate<S, L> => BalanceGateLayer<L>);

/// The response future of [`BalanceGate`].
pub type ResponseFuture<S, L, B> = AdmissionFuture<S, BalanceGateLayer<L>, B>;

impl<B, L: Ledger> Admission<B> for BalanceGateLayer<L> {
    type Ticket = Billing<L>;
    type Pending = Carry<L::Reserve, Hold<L>>;

    // Inlined into the admission future, see `Start::after`.
    #[inline(always)]
    fn start(&self, request: &mut Request<B>) -> Start<Billing<L>, Self::Pending> {
        let extensions = request.extensions();
        let (Some(principal), Some(model)) =
            (extensions.get::<Principal>(), extensions.get::<ModelInfo>())
        else {
            return Start::Decided(Verdict::Admit(Billing(None)));
        };
        let estimate = TokenEstimate::of(extensions);
        let endpoint = extensions.get::<Endpoint>().copied();
        let account = principal.account_id_shared().clone();
        let config = &self.config;
        let hold = Hold {
            accountant: Accountant {
                ledger: config.ledger.clone(),
                reservation: None,
                prices: model.prices,
                prompt_estimate: estimate.prompt,
                policy: config.policy,
                sink: config.sink.clone(),
                record: RecordBase {
                    request_id: request.headers().get(X_REQUEST_ID).cloned(),
                    key_id: principal.key_id_shared().clone(),
                    account: account.clone(),
                    model: model.id.clone(),
                    endpoint,
                    status: 0,
                },
                started: Instant::now(),
            },
            balance_header: config.balance_header,
            observers: extensions.get::<SseObservers>().cloned(),
            endpoint,
        };
        let cost = model.prices.cost(estimate.prompt, estimate.completion);
        let reserve = config.ledger.reserve(ReservationId::new(), &account, cost);
        Start::after(self, request, reserve, hold)
    }

    #[inline(always)]
    fn resume(
        &self,
        (reserved, mut hold): (Result<Reservation, LedgerError>, Hold<L>),
        _: &mut Request<B>,
    ) -> Verdict<Billing<L>> {
        match reserved {
            Ok(reservation) => {
                hold.accountant.reservation = Some(reservation);
                Verdict::Admit(Billing(Some(hold)))
            }
            // Nothing was reserved: nothing to settle.
            Err(error) => Verdict::Reject(reject(error), Billing(None)),
        }
    }
}
