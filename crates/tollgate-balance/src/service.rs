use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tower_layer::Layer;

use http::Request;
use tollgate_core::admission::{Admission, AdmissionFuture, Carry, Start, Verdict};
use tollgate_core::request_id::X_REQUEST_ID;
use tollgate_core::{Endpoint, ModelInfo, Principal, Telemetry, TokenEstimate};
use tollgate_sse::SseObservers;

use crate::accounting::{Accountant, RecordBase, run};
use crate::future::{Billing, Hold, reject, reject_cap};
use crate::{
    BalanceGateLayer, CapError, CapReservation, CapStore, InMemoryCapStore, Ledger, LedgerError,
    Reservation, ReservationId,
};

/// The service of [`BalanceGateLayer`]; see there.
#[derive(Debug)]
pub struct BalanceGate<S, L, C = InMemoryCapStore> {
    inner: S,
    admission: BalanceGateLayer<L, C>,
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

tollgate_core::admission_service!(BalanceGate<S, L, C> => BalanceGateLayer<L, C>);

/// The response future of [`BalanceGate`].
pub type ResponseFuture<S, L, B, C = InMemoryCapStore> =
    AdmissionFuture<S, BalanceGateLayer<L, C>, B>;

/// What a reservation is: the ledger's and, for a caller with spend caps, the caps'.
type Reserved = (
    Result<Reservation, LedgerError>,
    Option<Result<CapReservation, CapError>>,
);

/// Reserving on the ledger and the spend caps at once: with network backends their round
/// trips overlap.
pub struct Reserving<L: Ledger, C: CapStore> {
    ledger: L::Reserve,
    ledger_done: Option<Result<Reservation, LedgerError>>,
    caps: Option<C::Reserve>,
    caps_done: Option<Result<CapReservation, CapError>>,
}

impl<L: Ledger, C: CapStore> Future for Reserving<L, C> {
    type Output = Reserved;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reserved> {
        let this = self.get_mut();
        if this.ledger_done.is_none()
            && let Poll::Ready(done) = Pin::new(&mut this.ledger).poll(cx)
        {
            this.ledger_done = Some(done);
        }
        if let Some(caps) = &mut this.caps
            && this.caps_done.is_none()
            && let Poll::Ready(done) = Pin::new(caps).poll(cx)
        {
            this.caps_done = Some(done);
        }
        let caps_pending = this.caps.is_some() && this.caps_done.is_none();
        match this.ledger_done.take() {
            Some(ledger) if !caps_pending => Poll::Ready((ledger, this.caps_done.take())),
            ledger => {
                this.ledger_done = ledger;
                Poll::Pending
            }
        }
    }
}

impl<B, L: Ledger, C: CapStore> Admission<B> for BalanceGateLayer<L, C> {
    type Ticket = Billing<L, C>;
    type Pending = Carry<Reserving<L, C>, Hold<L, C>>;

    // Inlined into the admission future, see `Start::after`.
    #[inline(always)]
    fn start(&self, request: &mut Request<B>) -> Start<Billing<L, C>, Self::Pending> {
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
            accountant: Box::new(Accountant {
                ledger: config.ledger.clone(),
                reservation: None,
                caps: None,
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
                telemetry: extensions.get::<Telemetry>().cloned(),
            }),
            balance_header: config.balance_header,
            observers: extensions.get::<SseObservers>().cloned(),
            endpoint,
        };
        let cost = model.prices.cost(estimate.prompt, estimate.completion);
        // One id for both: each store keeps its own reservations.
        let id = ReservationId::new();
        let caps = principal.spend_caps_shared().map(|caps| {
            let key = principal.key_id_shared();
            config.caps.reserve(id, key, caps, cost, (config.clock)())
        });
        let reserving = Reserving {
            ledger: config.ledger.reserve(id, &account, cost),
            ledger_done: None,
            caps,
            caps_done: None,
        };
        Start::after(self, request, reserving, hold)
    }

    #[inline(always)]
    fn resume(
        &self,
        ((reserved, capped), mut hold): (Reserved, Hold<L, C>),
        _: &mut Request<B>,
    ) -> Verdict<Billing<L, C>> {
        let config = &self.config;
        match (reserved, capped) {
            (Ok(reservation), None) => {
                hold.accountant.admitted(&reservation);
                hold.accountant.reservation = Some(reservation);
                Verdict::Admit(Billing(Some(hold)))
            }
            (Ok(reservation), Some(Ok(cap_reservation))) => {
                hold.accountant.admitted(&reservation);
                hold.accountant.reservation = Some(reservation);
                hold.accountant.caps = Some((config.caps.clone(), cap_reservation));
                Verdict::Admit(Billing(Some(hold)))
            }
            // The balance decides first: waiting for a cap to reset is no use without credit.
            (Err(error), capped) => {
                if let Some(Ok(cap_reservation)) = capped {
                    run(config.caps.release(cap_reservation), |released| {
                        if let Err(error) = released {
                            tracing::error!(error = %error, "releasing a cap reservation failed");
                        }
                    });
                }
                Verdict::Reject(reject(error), Billing(None))
            }
            (Ok(reservation), Some(Err(error))) => {
                run(config.ledger.release(reservation), |released| {
                    if let Err(error) = released {
                        tracing::error!(error = %error, "releasing a reservation failed");
                    }
                });
                let now = (config.clock)();
                Verdict::Reject(reject_cap(error, config.cap_status, now), Billing(None))
            }
        }
    }
}
