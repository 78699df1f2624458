//! Where balances live: the `Ledger` trait and the atomic in-memory ledger.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tollgate_core::BoxError;

/// Money in integer micro-units of the currency (1 USD = 1,000,000). Never a float.
pub type Micros = u64;

/// Credit set aside for one request until it settles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The account.
    pub account: Arc<str>,
    /// How much was set aside.
    pub amount: Micros,
    /// The balance left available after setting it aside.
    pub remaining: Micros,
}

/// What a settlement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// What was charged: the amount asked for, or less when the reservation and the balance
    /// together could not cover it.
    pub charged: Micros,
    /// The account's balance afterwards (reservations in flight excluded).
    pub balance: Micros,
}

/// Why credit could not be reserved.
#[derive(Debug)]
pub enum LedgerError {
    /// The balance does not cover the amount.
    Insufficient {
        /// What is available now.
        balance: Micros,
        /// What the request may cost.
        required: Micros,
    },
    /// The ledger itself failed (a database is down).
    Unavailable(BoxError),
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::Insufficient { balance, required } => {
                write!(f, "balance {balance} does not cover {required}")
            }
            LedgerError::Unavailable(error) => write!(f, "ledger unavailable: {error}"),
        }
    }
}

impl std::error::Error for LedgerError {}

/// Prepaid balances, reserve-then-settle: a request reserves its worst-case cost before it
/// runs, and settles to its real cost after, so concurrent requests can never spend more than
/// the balance. Futures are `'static` so a settlement can finish after the response did.
pub trait Ledger: Send + Sync + 'static {
    /// A reservation's future.
    type Reserve: Future<Output = Result<Reservation, LedgerError>> + Send + Unpin + 'static;
    /// A settlement's future.
    type Settle: Future<Output = Result<Settlement, LedgerError>> + Send + Unpin + 'static;
    /// A read's future.
    type Balance: Future<Output = Result<Micros, LedgerError>> + Send + 'static;

    /// Sets `amount` aside if the available balance covers it.
    fn reserve(&self, account: &Arc<str>, amount: Micros) -> Self::Reserve;
    /// Charges `actual` against a reservation and returns the rest (an `actual` above the
    /// reservation takes what is available, never more: a balance never goes negative).
    fn settle(&self, reservation: Reservation, actual: Micros) -> Self::Settle;
    /// Returns a reservation whole (the request was not served).
    fn release(&self, reservation: Reservation) -> Self::Settle;
    /// The available balance.
    fn balance(&self, account: &str) -> Self::Balance;
    /// Adds credit; it is available to the very next request.
    fn top_up(&self, account: &str, amount: Micros) -> Self::Balance;
}

/// An in-memory ledger, atomic per account (one compare-and-swap per reservation). Cheap to
/// clone (shared state).
///
/// ```
/// use std::sync::Arc;
/// use tollgate_balance::{InMemoryLedger, Ledger};
///
/// # tokio_test::block_on(async {
/// let ledger = InMemoryLedger::new();
/// ledger.top_up("acct_1", 1_000).await.unwrap();
/// let account: Arc<str> = Arc::from("acct_1");
/// let reservation = ledger.reserve(&account, 600).await.unwrap();
/// assert!(ledger.reserve(&account, 600).await.is_err(), "only 400 left");
/// let settled = ledger.settle(reservation, 250).await.unwrap();
/// assert_eq!((settled.charged, settled.balance), (250, 750));
/// # });
/// ```
#[derive(Clone, Default)]
pub struct InMemoryLedger {
    accounts: Arc<papaya::HashMap<Box<str>, AtomicU64>>,
}

impl InMemoryLedger {
    /// An empty ledger: every account starts at zero.
    pub fn new() -> Self {
        InMemoryLedger::default()
    }

    fn available(&self, account: &str) -> Micros {
        self.accounts
            .pin()
            .get(account)
            .map_or(0, |balance| balance.load(Ordering::Acquire))
    }

    fn credit(&self, account: &str, amount: Micros) -> Micros {
        let accounts = self.accounts.pin();
        let balance = accounts.get_or_insert_with(account.into(), || AtomicU64::new(0));
        balance
            .fetch_add(amount, Ordering::AcqRel)
            .saturating_add(amount)
    }
}

impl fmt::Debug for InMemoryLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryLedger")
            .field("accounts", &self.accounts.len())
            .finish()
    }
}

impl Ledger for InMemoryLedger {
    type Reserve = Ready<Result<Reservation, LedgerError>>;
    type Settle = Ready<Result<Settlement, LedgerError>>;
    type Balance = Ready<Result<Micros, LedgerError>>;

    fn reserve(&self, account: &Arc<str>, amount: Micros) -> Self::Reserve {
        let accounts = self.accounts.pin();
        let Some(balance) = accounts.get(&**account) else {
            return ready(Err(LedgerError::Insufficient {
                balance: 0,
                required: amount,
            }));
        };
        let taken = balance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| {
            available.checked_sub(amount).filter(|_| available > 0)
        });
        ready(match taken {
            Ok(available) => Ok(Reservation {
                account: account.clone(),
                amount,
                remaining: available - amount,
            }),
            Err(available) => Err(LedgerError::Insufficient {
                balance: available,
                required: amount,
            }),
        })
    }

    fn settle(&self, reservation: Reservation, actual: Micros) -> Self::Settle {
        let accounts = self.accounts.pin();
        let Some(balance) = accounts.get(&*reservation.account) else {
            return ready(Ok(Settlement {
                charged: 0,
                balance: 0,
            }));
        };
        let mut charged = actual;
        let updated = balance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| {
            let with_reservation = available.saturating_add(reservation.amount);
            charged = actual.min(with_reservation);
            Some(with_reservation - charged)
        });
        let before = updated.unwrap_or_else(|current| current);
        ready(Ok(Settlement {
            charged,
            balance: before.saturating_add(reservation.amount) - charged,
        }))
    }

    fn release(&self, reservation: Reservation) -> Self::Settle {
        self.settle(reservation, 0)
    }

    fn balance(&self, account: &str) -> Self::Balance {
        ready(Ok(self.available(account)))
    }

    fn top_up(&self, account: &str, amount: Micros) -> Self::Balance {
        ready(Ok(self.credit(account, amount)))
    }
}
