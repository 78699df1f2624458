//! Where balances live: the `Ledger` trait and the atomic in-memory ledger.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tollgate_core::BoxError;

/// Money in integer micro-units of the currency (1 USD = 1,000,000). Never a float.
pub type Micros = u64;

/// Names one reservation, so that a retried call cannot reserve or charge twice.
///
/// [`ReservationId::new`] makes one that no other call, in this process or another, makes
/// again: 64 random bits drawn once per process and a 64-bit counter (no system call per id).
///
/// ```
/// use tollgate_balance::ReservationId;
///
/// let (a, b) = (ReservationId::new(), ReservationId::new());
/// assert_ne!(a, b);
/// assert_eq!(a.to_string().len(), 32);
/// assert_eq!(a.to_string().parse::<ReservationId>(), Ok(a));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(u128);

impl ReservationId {
    /// A new, unique id.
    pub fn new() -> Self {
        static PROCESS: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let process = *PROCESS.get_or_init(|| {
            // The standard library seeds each `RandomState` from the operating system.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.finish()
        });
        let count = NEXT.fetch_add(1, Ordering::Relaxed);
        ReservationId(u128::from(process) << 64 | u128::from(count))
    }

    /// The id with this value (read back from storage).
    pub const fn from_u128(value: u128) -> Self {
        ReservationId(value)
    }

    /// The id's value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

impl Default for ReservationId {
    fn default() -> Self {
        ReservationId::new()
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReservationId({self})")
    }
}

/// A reservation id that is not 32 hexadecimal digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidReservationId;

impl fmt::Display for InvalidReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reservation id is 32 hexadecimal digits")
    }
}

impl std::error::Error for InvalidReservationId {}

impl FromStr for ReservationId {
    type Err = InvalidReservationId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidReservationId);
        }
        u128::from_str_radix(text, 16)
            .map(ReservationId)
            .map_err(|_| InvalidReservationId)
    }
}

/// Credit set aside for one request until it settles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Which reservation.
    pub id: ReservationId,
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
///
/// Every ledger keeps these rules (`tollgate_testkit::conformance` checks them):
/// - **Idempotent:** reserving again with an id that is still open returns that reservation
///   and sets nothing more aside; settling or releasing a reservation a second time charges
///   nothing. A caller whose call timed out can retry it with the same id.
/// - **Expiring:** a reservation not settled within the ledger's time to live goes back to
///   the balance by itself, so the reservations of a gateway that crashed are not lost;
///   settling it afterwards still charges what was used, from what is available then.
pub trait Ledger: Send + Sync + 'static {
    /// A reservation's future.
    type Reserve: Future<Output = Result<Reservation, LedgerError>> + Send + Unpin + 'static;
    /// A settlement's future.
    type Settle: Future<Output = Result<Settlement, LedgerError>> + Send + Unpin + 'static;
    /// A read's future.
    type Balance: Future<Output = Result<Micros, LedgerError>> + Send + 'static;

    /// Sets `amount` aside under `id` if the available balance covers it (a zero balance
    /// covers nothing, not even a zero amount).
    fn reserve(&self, id: ReservationId, account: &Arc<str>, amount: Micros) -> Self::Reserve;
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

/// How long a reservation of the [`InMemoryLedger`] stays open by default: above any request's
/// run time (streams included).
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(600);

/// How long a settlement of an expired reservation can still find it.
const EXPIRED_KEPT: Duration = Duration::from_secs(3600);

/// An in-memory ledger, atomic per account (one compare-and-swap per reservation), with the
/// open reservations in sharded maps for idempotency and expiry. Cheap to clone (shared
/// state).
///
/// ```
/// use std::sync::Arc;
/// use tollgate_balance::{InMemoryLedger, Ledger, ReservationId};
///
/// # tokio_test::block_on(async {
/// let ledger = InMemoryLedger::new();
/// ledger.top_up("acct_1", 1_000).await.unwrap();
/// let account: Arc<str> = Arc::from("acct_1");
/// let reservation = ledger.reserve(ReservationId::new(), &account, 600).await.unwrap();
/// assert!(ledger.reserve(ReservationId::new(), &account, 600).await.is_err(), "only 400 left");
/// assert_eq!(ledger.open_reservations("acct_1").len(), 1);
/// let settled = ledger.settle(reservation, 250).await.unwrap();
/// assert_eq!((settled.charged, settled.balance), (250, 750));
/// # });
/// ```
#[derive(Clone)]
pub struct InMemoryLedger {
    state: Arc<State>,
}

/// Shards of the reservation maps: ids count up, so consecutive requests land in different
/// shards and rarely wait on one another.
const SHARDS: usize = 16;

struct State {
    accounts: papaya::HashMap<Box<str>, AtomicU64, foldhash::fast::RandomState>,
    reservations: [Mutex<Shard>; SHARDS],
    ttl: Duration,
    epoch: Instant,
    /// When the next sweep for expired reservations is due, in nanoseconds since `epoch`.
    next_sweep: AtomicU64,
}

/// Some of the reservations: those open, and those that expired unsettled (with when),
/// under one lock so that a settlement and a sweep never both act on one reservation.
#[derive(Default)]
struct Shard {
    open: HashMap<ReservationId, Open, foldhash::fast::RandomState>,
    expired: HashMap<ReservationId, Instant, foldhash::fast::RandomState>,
}

struct Open {
    account: Arc<str>,
    amount: Micros,
    deadline: Instant,
}

impl Default for InMemoryLedger {
    fn default() -> Self {
        InMemoryLedger::new()
    }
}

impl InMemoryLedger {
    /// An empty ledger: every account starts at zero.
    pub fn new() -> Self {
        InMemoryLedger::with_reservation_ttl(DEFAULT_RESERVATION_TTL)
    }

    /// An empty ledger whose reservations go back to the balance when left open longer than
    /// `ttl` ([`DEFAULT_RESERVATION_TTL`] for [`new`](InMemoryLedger::new)). Set it above the
    /// longest request.
    pub fn with_reservation_ttl(ttl: Duration) -> Self {
        InMemoryLedger {
            state: Arc::new(State {
                accounts: papaya::HashMap::default(),
                reservations: std::array::from_fn(|_| Mutex::default()),
                ttl,
                epoch: Instant::now(),
                next_sweep: AtomicU64::new(0),
            }),
        }
    }

    /// The reservations of `account` open now.
    pub fn open_reservations(&self, account: &str) -> Vec<Reservation> {
        let remaining = self.available(account);
        let mut reservations = Vec::new();
        for shard in &self.state.reservations {
            let shard = lock(shard);
            let open = shard
                .open
                .iter()
                .filter(|(_, open)| &*open.account == account);
            reservations.extend(open.map(|(id, open)| Reservation {
                id: *id,
                account: open.account.clone(),
                amount: open.amount,
                remaining,
            }));
        }
        reservations.sort_by_key(|reservation| reservation.id);
        reservations
    }

    fn shard(&self, id: ReservationId) -> MutexGuard<'_, Shard> {
        lock(&self.state.reservations[id.as_u128() as usize % SHARDS])
    }

    fn available(&self, account: &str) -> Micros {
        self.state
            .accounts
            .pin()
            .get(account)
            .map_or(0, |balance| balance.load(Ordering::Acquire))
    }

    fn credit(&self, account: &str, amount: Micros) -> Micros {
        let accounts = self.state.accounts.pin();
        let balance = accounts.get_or_insert_with(account.into(), || AtomicU64::new(0));
        balance
            .fetch_add(amount, Ordering::AcqRel)
            .saturating_add(amount)
    }

    /// Takes `amount` from the balance if it covers it; the balance before, or the one that
    /// did not cover it.
    fn debit(&self, account: &str, amount: Micros) -> Result<Micros, Micros> {
        let accounts = self.state.accounts.pin();
        let Some(balance) = accounts.get(account) else {
            return Err(0);
        };
        balance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| {
            available.checked_sub(amount).filter(|_| available > 0)
        })
    }

    /// Returns `held` to the balance and charges `actual` of it and of the balance, never more
    /// than both hold.
    fn charge(&self, account: &str, held: Micros, actual: Micros) -> Settlement {
        let accounts = self.state.accounts.pin();
        let balance = accounts.get_or_insert_with(account.into(), || AtomicU64::new(0));
        let mut charged = actual;
        let updated = balance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| {
            let with_held = available.saturating_add(held);
            charged = actual.min(with_held);
            Some(with_held - charged)
        });
        let before = updated.unwrap_or_else(|current| current);
        Settlement {
            charged,
            balance: before.saturating_add(held) - charged,
        }
    }

    /// Returns expired reservations to their balances; runs at most eight times per time to
    /// live, so a reservation is back within 1.125 times it.
    fn sweep(&self, now: Instant) {
        let state = &*self.state;
        let since = u64::try_from(now.duration_since(state.epoch).as_nanos()).unwrap_or(u64::MAX);
        let due = state.next_sweep.load(Ordering::Relaxed);
        let every = u64::try_from((state.ttl / 8).as_nanos()).unwrap_or(u64::MAX);
        if since < due
            || state
                .next_sweep
                .compare_exchange(
                    due,
                    since.saturating_add(every),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let mut returned = Vec::new();
        for shard in &state.reservations {
            let mut shard = lock(shard);
            let Shard { open, expired } = &mut *shard;
            open.retain(|id, reservation| {
                if reservation.deadline > now {
                    return true;
                }
                expired.insert(*id, now);
                returned.push((reservation.account.clone(), reservation.amount));
                false
            });
            expired.retain(|_, at| now.duration_since(*at) < EXPIRED_KEPT);
        }
        for (account, amount) in returned {
            self.credit(&account, amount);
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock leaves the maps consistent (each change is one call).
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for InMemoryLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryLedger")
            .field("accounts", &self.state.accounts.len())
            .field(
                "open_reservations",
                &self
                    .state
                    .reservations
                    .iter()
                    .map(|shard| lock(shard).open.len())
                    .sum::<usize>(),
            )
            .field("reservation_ttl", &self.state.ttl)
            .finish()
    }
}

impl Ledger for InMemoryLedger {
    type Reserve = Ready<Result<Reservation, LedgerError>>;
    type Settle = Ready<Result<Settlement, LedgerError>>;
    type Balance = Ready<Result<Micros, LedgerError>>;

    fn reserve(&self, id: ReservationId, account: &Arc<str>, amount: Micros) -> Self::Reserve {
        let now = Instant::now();
        self.sweep(now);
        let mut shard = self.shard(id);
        if let Some(existing) = shard.open.get(&id) {
            // A retry of a reservation that is still open: it stands as it was.
            return ready(Ok(Reservation {
                id,
                account: existing.account.clone(),
                amount: existing.amount,
                remaining: self.available(&existing.account),
            }));
        }
        ready(match self.debit(account, amount) {
            Ok(available) => {
                let open = Open {
                    account: account.clone(),
                    amount,
                    deadline: now + self.state.ttl,
                };
                shard.open.insert(id, open);
                Ok(Reservation {
                    id,
                    account: account.clone(),
                    amount,
                    remaining: available - amount,
                })
            }
            Err(available) => Err(LedgerError::Insufficient {
                balance: available,
                required: amount,
            }),
        })
    }

    fn settle(&self, reservation: Reservation, actual: Micros) -> Self::Settle {
        let account = &*reservation.account;
        let mut shard = self.shard(reservation.id);
        let settlement = if let Some(open) = shard.open.remove(&reservation.id) {
            drop(shard);
            self.charge(account, open.amount, actual)
        } else if shard.expired.remove(&reservation.id).is_some() {
            drop(shard);
            // Its amount went back already: what was used comes from the balance.
            self.charge(account, 0, actual)
        } else {
            drop(shard);
            // Settled before: a retry charges nothing.
            Settlement {
                charged: 0,
                balance: self.available(account),
            }
        };
        ready(Ok(settlement))
    }

    fn release(&self, reservation: Reservation) -> Self::Settle {
        self.settle(reservation, 0)
    }

    fn balance(&self, account: &str) -> Self::Balance {
        self.sweep(Instant::now());
        ready(Ok(self.available(account)))
    }

    fn top_up(&self, account: &str, amount: Micros) -> Self::Balance {
        ready(Ok(self.credit(account, amount)))
    }
}
