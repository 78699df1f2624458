//! Spend caps per API key: the `CapStore` trait and the in-memory store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{Future, Ready, ready};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tollgate_core::BoxError;
use tollgate_core::spend::{CapPeriod, SpendCap, from_unix_millis, unix_millis};

use crate::{DEFAULT_RESERVATION_TTL, Micros, ReservationId};

/// How long a settlement of an expired reservation can still find it.
const EXPIRED_KEPT: Duration = Duration::from_secs(3600);

/// What a reservation against a key's spend caps holds: the same `amount` in the window of
/// each cap that holds `at`. A settlement charges those windows, even after they ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapReservation {
    /// Which reservation.
    pub id: ReservationId,
    /// The API key's id.
    pub key_id: Arc<str>,
    /// The caps it was checked against.
    pub caps: Arc<[SpendCap]>,
    /// How much each cap holds for it.
    pub amount: Micros,
    /// When it was made: its windows are those holding this instant.
    pub at: SystemTime,
}

/// What settling a cap reservation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSettlement {
    /// What every cap counted as spent: the amount asked for, or less when a cap had no room
    /// for more than the reservation (the upstream used more than was reserved).
    pub charged: Micros,
}

/// Where a key stands against one cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapUsage {
    /// The cap.
    pub cap: SpendCap,
    /// Spent in the window (calendar) or the trailing period (rolling), settled requests only.
    pub spent: Micros,
    /// Held by requests in flight.
    pub reserved: Micros,
    /// When what is spent now stops counting: the window's end, or for a rolling cap when the
    /// latest spend counted now has left the period (`at` when nothing is counted).
    pub resets_at: SystemTime,
}

/// A cap with no room for a request's worst case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapExceeded {
    /// The cap that refused. When several did, the one that resets last: the request fits no
    /// earlier than that.
    pub cap: SpendCap,
    /// Spent in its window, settled requests only.
    pub spent: Micros,
    /// Held by requests in flight.
    pub reserved: Micros,
    /// What the request may cost.
    pub required: Micros,
    /// When the request fits again, if nothing else is spent: the window's end, or for a
    /// rolling cap when enough of the spend counted now has left the period.
    pub resets_at: SystemTime,
}

/// Why a cap reservation failed.
#[derive(Debug)]
pub enum CapError {
    /// A cap has no room for the amount; nothing was reserved on any cap.
    Exceeded(CapExceeded),
    /// The store itself failed (a database is down).
    Unavailable(BoxError),
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::Exceeded(exceeded) => write!(
                f,
                "{} spend cap {} has {} spent and {} reserved, no room for {}",
                exceeded.cap.period(),
                exceeded.cap.limit(),
                exceeded.spent,
                exceeded.reserved,
                exceeded.required
            ),
            CapError::Unavailable(error) => write!(f, "spend caps unavailable: {error}"),
        }
    }
}

impl std::error::Error for CapError {}

/// Spend caps per API key, reserve-then-settle like a [`Ledger`](crate::Ledger): a request
/// holds its worst-case cost in every cap of its key before it runs, and settles to its real
/// cost after, so concurrent requests can never spend past a cap.
///
/// Every store keeps these rules (`tollgate_testkit::conformance::caps` checks them):
/// - **Exact windows:** a calendar cap counts what was spent in the UTC window
///   ([`CapPeriod::window`]) holding the instant the caller passes (its clock decides, so
///   tests can move it across month ends); a reservation fits iff spent + reserved + amount
///   ≤ limit. A rolling cap counts by [`RollingSlots`].
/// - **All or nothing:** a reservation holds its amount on every cap of the key, or on none.
/// - **Idempotent:** reserving again with an id that is still open returns that reservation;
///   settling or releasing it again charges nothing.
/// - **Expiring:** a reservation not settled within the store's time to live stops holding by
///   itself; settling it afterwards still charges what was used, as room allows.
/// - **Never past a cap:** a settlement charges at most what every cap has room for once the
///   reservation is given back, and charges the windows the reservation was made in, even
///   after they ended.
pub trait CapStore: Send + Sync + 'static {
    /// A reservation's future.
    type Reserve: Future<Output = Result<CapReservation, CapError>> + Send + Unpin + 'static;
    /// A settlement's future.
    type Settle: Future<Output = Result<CapSettlement, CapError>> + Send + Unpin + 'static;
    /// A read's future.
    type Usage: Future<Output = Result<Vec<CapUsage>, CapError>> + Send + 'static;

    /// Holds `amount` under `id` on each of `caps` of the key `key_id`, in the windows holding
    /// `at`, if every one has room for it.
    fn reserve(
        &self,
        id: ReservationId,
        key_id: &Arc<str>,
        caps: &Arc<[SpendCap]>,
        amount: Micros,
        at: SystemTime,
    ) -> Self::Reserve;
    /// Counts `actual` as spent on each cap, in the reservation's windows, and gives back the
    /// hold; `actual` is cut to what every cap has room for.
    fn settle(&self, reservation: CapReservation, actual: Micros) -> Self::Settle;
    /// Gives a reservation back whole (the request was not served).
    fn release(&self, reservation: CapReservation) -> Self::Settle;
    /// Where the key stands against each of `caps` at `at`.
    fn usage(&self, key_id: &str, caps: &[SpendCap], at: SystemTime) -> Self::Usage;
}

/// How many slots a rolling period is counted in.
const SLOTS: i64 = 60;

/// How a rolling cap counts spend: in 60 slots of a sixtieth of the period each (rounded up to
/// whole milliseconds), by the instant of each request's reservation. At `at`, the slots from
/// the one holding `at - period` on count, so a spend counts for at least the period and at
/// most one slot longer: a rolling cap is never exceeded over any trailing period, and forgets
/// spend at most a sixtieth of the period late.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_balance::RollingSlots;
///
/// let hour = RollingSlots::new(Duration::from_secs(3_600));
/// let at = SystemTime::UNIX_EPOCH + Duration::from_secs(7_230);
/// assert_eq!(hour.slot(at), 120, "one-minute slots");
/// assert_eq!(hour.oldest(at), 60);
/// assert_eq!(hour.frees_at(hour.slot(at)), SystemTime::UNIX_EPOCH + Duration::from_secs(10_860));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingSlots {
    period: i64,
    width: i64,
}

impl RollingSlots {
    /// The slots of a rolling `period`.
    pub fn new(period: Duration) -> Self {
        let period = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
        RollingSlots {
            period,
            width: (period + SLOTS - 1) / SLOTS,
        }
    }

    /// The period in milliseconds.
    pub fn period_millis(&self) -> i64 {
        self.period
    }

    /// The slot holding `at`.
    pub fn slot(&self, at: SystemTime) -> i64 {
        unix_millis(at).div_euclid(self.width)
    }

    /// The first slot counted at `at`.
    pub fn oldest(&self, at: SystemTime) -> i64 {
        unix_millis(at)
            .saturating_sub(self.period)
            .div_euclid(self.width)
    }

    /// When spend in `slot` stops counting.
    pub fn frees_at(&self, slot: i64) -> SystemTime {
        from_unix_millis(
            slot.saturating_add(1)
                .saturating_mul(self.width)
                .saturating_add(self.period),
        )
    }
}

/// Spend caps in memory, for one gateway process: all caps of a key under one lock (so a
/// reservation holds on all of them or none), keys independent of one another. Cheap to
/// clone (shared state).
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use tollgate_balance::{CapError, CapStore, InMemoryCapStore, ReservationId};
/// use tollgate_core::SpendCap;
///
/// # tokio_test::block_on(async {
/// let store = InMemoryCapStore::new();
/// let key: Arc<str> = Arc::from("key_1");
/// let caps: Arc<[SpendCap]> = Arc::from([SpendCap::daily(1_000).unwrap()]);
/// let now = SystemTime::now();
/// let held = store.reserve(ReservationId::new(), &key, &caps, 600, now).await.unwrap();
/// let refused = store.reserve(ReservationId::new(), &key, &caps, 600, now).await;
/// assert!(matches!(refused, Err(CapError::Exceeded(e)) if e.reserved == 600));
/// assert_eq!(store.settle(held, 250).await.unwrap().charged, 250);
/// let usage = store.usage("key_1", &caps, now).await.unwrap();
/// assert_eq!((usage[0].spent, usage[0].reserved), (250, 0));
/// // Tomorrow is another day.
/// let tomorrow = now + Duration::from_secs(86_400);
/// assert_eq!(store.usage("key_1", &caps, tomorrow).await.unwrap()[0].spent, 0);
/// # });
/// ```
#[derive(Clone)]
pub struct InMemoryCapStore {
    state: Arc<Store>,
}

struct Store {
    keys: papaya::HashMap<Box<str>, Mutex<KeyState>, foldhash::fast::RandomState>,
    ttl: Duration,
}

/// Everything of one key: its windows and its reservations.
#[derive(Default)]
struct KeyState {
    /// Calendar windows by period and start (Unix ms).
    calendar: HashMap<(CapPeriod, i64), Tally>,
    /// Rolling caps by period length (ms).
    rolling: HashMap<i64, Rolling>,
    open: HashMap<ReservationId, Open>,
    /// No open reservation expires before this: until then a sweep has nothing to do. Not
    /// moved when one settles, so it may be early, never late.
    next_sweep: Option<Instant>,
    /// Reservations that expired unsettled, and when.
    expired: HashMap<ReservationId, Instant>,
}

#[derive(Default)]
struct Tally {
    spent: Micros,
    held: Micros,
}

#[derive(Default)]
struct Rolling {
    /// Spend by slot.
    slots: BTreeMap<i64, Micros>,
    /// Held by open reservations, whatever their slot: they count until they settle.
    held: Micros,
}

struct Open {
    caps: Arc<[SpendCap]>,
    amount: Micros,
    at: SystemTime,
    deadline: Instant,
}

impl KeyState {
    /// What `cap` counts at `at`: (spent, held).
    fn counted(&self, cap: &SpendCap, at: SystemTime) -> (Micros, Micros) {
        match cap.period() {
            CapPeriod::Rolling(period) => {
                let slots = RollingSlots::new(period);
                self.rolling
                    .get(&slots.period_millis())
                    .map_or((0, 0), |rolling| {
                        let spent = rolling
                            .slots
                            .range(slots.oldest(at)..)
                            .fold(0, |sum: Micros, (_, spent)| sum.saturating_add(*spent));
                        (spent, rolling.held)
                    })
            }
            calendar => self
                .calendar
                .get(&(calendar, window_start(calendar, at)))
                .map_or((0, 0), |tally| (tally.spent, tally.held)),
        }
    }

    /// What `cap` has room for at `at`, reservations held included.
    fn room(&self, cap: &SpendCap, at: SystemTime) -> Micros {
        let (spent, held) = self.counted(cap, at);
        cap.limit().saturating_sub(spent.saturating_add(held))
    }

    /// Adds `amount` to what `cap` holds at `at`, or takes it away.
    fn hold(&mut self, cap: &SpendCap, at: SystemTime, amount: Micros, add: bool) {
        let held = match cap.period() {
            CapPeriod::Rolling(period) => {
                let length = RollingSlots::new(period).period_millis();
                &mut self.rolling.entry(length).or_default().held
            }
            calendar => {
                let start = window_start(calendar, at);
                &mut self.calendar.entry((calendar, start)).or_default().held
            }
        };
        *held = if add {
            held.saturating_add(amount)
        } else {
            held.saturating_sub(amount)
        };
    }

    /// Counts `amount` as spent on `cap`, in the window (or slot) holding `at`.
    fn spend(&mut self, cap: &SpendCap, at: SystemTime, amount: Micros) {
        let spent = match cap.period() {
            CapPeriod::Rolling(period) => {
                let slots = RollingSlots::new(period);
                let rolling = self.rolling.entry(slots.period_millis()).or_default();
                rolling.slots.entry(slots.slot(at)).or_default()
            }
            calendar => {
                let start = window_start(calendar, at);
                &mut self.calendar.entry((calendar, start)).or_default().spent
            }
        };
        *spent = spent.saturating_add(amount);
    }

    /// Gives back reservations past their deadline.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|due| due > now) {
            return;
        }
        let expired: Vec<ReservationId> = self
            .open
            .iter()
            .filter(|(_, open)| open.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(open) = self.open.remove(&id) {
                for cap in open.caps.iter() {
                    self.hold(cap, open.at, open.amount, false);
                }
                self.expired.insert(id, now);
            }
        }
        self.expired
            .retain(|_, at| now.duration_since(*at) < EXPIRED_KEPT);
        self.next_sweep = self.open.values().map(|open| open.deadline).min();
    }

    /// Forgets windows and slots that can no longer count at `at` and hold nothing (a late
    /// settlement recreates what it charges).
    fn prune(&mut self, at: SystemTime) {
        let horizon = unix_millis(at).saturating_sub(EXPIRED_KEPT.as_millis() as i64);
        self.calendar.retain(|(period, start), tally| {
            tally.held > 0 || window_end(*period, *start) > horizon
        });
        self.rolling.retain(|length, rolling| {
            let oldest = RollingSlots::new(Duration::from_millis(length.unsigned_abs())).oldest(at);
            while let Some(first) = rolling.slots.first_entry()
                && *first.key() < oldest
            {
                first.remove();
            }
            rolling.held > 0 || !rolling.slots.is_empty()
        });
    }

    /// Why `cap` has no room for `amount` at `at`, if it has none.
    fn refusal(&self, cap: &SpendCap, at: SystemTime, amount: Micros) -> Option<CapExceeded> {
        let (spent, reserved) = self.counted(cap, at);
        let total = u128::from(spent) + u128::from(reserved) + u128::from(amount);
        let over = total
            .checked_sub(u128::from(cap.limit()))
            .filter(|over| *over > 0)?;
        let resets_at = match cap.period() {
            CapPeriod::Rolling(period) => {
                let slots = RollingSlots::new(period);
                let counted = self
                    .rolling
                    .get(&slots.period_millis())
                    .map(|rolling| rolling.slots.range(slots.oldest(at)..));
                rolling_reset(slots, counted.into_iter().flatten(), over, at)
            }
            calendar => calendar.window(at).map_or(at, |window| window.end()),
        };
        Some(CapExceeded {
            cap: *cap,
            spent,
            reserved,
            required: amount,
            resets_at,
        })
    }
}

/// When enough of the spend counted in `slots` (oldest first) has left the period to free
/// `over`; when it never can (reservations hold too much), when the last of it leaves.
fn rolling_reset<'a>(
    slots: RollingSlots,
    counted: impl Iterator<Item = (&'a i64, &'a Micros)>,
    over: u128,
    at: SystemTime,
) -> SystemTime {
    let mut freed = 0u128;
    let mut last = None;
    for (slot, spent) in counted {
        freed += u128::from(*spent);
        last = Some(*slot);
        if freed >= over {
            break;
        }
    }
    last.map_or(at, |slot| slots.frees_at(slot))
}

/// The start (Unix ms) of the calendar window of `period` holding `at`.
fn window_start(period: CapPeriod, at: SystemTime) -> i64 {
    period
        .window(at)
        .map_or(unix_millis(at), |window| unix_millis(window.start()))
}

/// The end (Unix ms) of the calendar window of `period` starting at `start`.
fn window_end(period: CapPeriod, start: i64) -> i64 {
    period
        .window(from_unix_millis(start))
        .map_or(start, |window| unix_millis(window.end()))
}

/// Of several refusals, the one that resets last (the first of those that reset together).
fn binding(current: Option<CapExceeded>, next: CapExceeded) -> Option<CapExceeded> {
    match current {
        Some(current) if current.resets_at >= next.resets_at => Some(current),
        _ => Some(next),
    }
}

impl Default for InMemoryCapStore {
    fn default() -> Self {
        InMemoryCapStore::new()
    }
}

impl InMemoryCapStore {
    /// An empty store: nothing spent on any key.
    pub fn new() -> Self {
        InMemoryCapStore::with_reservation_ttl(DEFAULT_RESERVATION_TTL)
    }

    /// An empty store whose reservations stop holding when left open longer than `ttl`
    /// ([`DEFAULT_RESERVATION_TTL`] for [`new`](InMemoryCapStore::new)). Set it as the
    /// ledger's: above the longest request.
    pub fn with_reservation_ttl(ttl: Duration) -> Self {
        InMemoryCapStore {
            state: Arc::new(Store {
                keys: papaya::HashMap::default(),
                ttl,
            }),
        }
    }

    /// Runs `change` on the key's state, creating it if it has none.
    fn with_key<R>(&self, key_id: &str, change: impl FnOnce(&mut KeyState) -> R) -> R {
        let keys = self.state.keys.pin();
        let state = match keys.get(key_id) {
            Some(state) => state,
            // Allocates the key's name only the first time it is seen.
            None => keys.get_or_insert_with(key_id.into(), Mutex::default),
        };
        change(&mut lock(state))
    }

    /// Runs `change` on the key's state, if it has one.
    fn with_existing<R>(&self, key_id: &str, change: impl FnOnce(&mut KeyState) -> R) -> Option<R> {
        let keys = self.state.keys.pin();
        keys.get(key_id).map(|state| change(&mut lock(state)))
    }

    fn reserve_now(
        &self,
        id: ReservationId,
        key_id: &Arc<str>,
        caps: &Arc<[SpendCap]>,
        amount: Micros,
        at: SystemTime,
    ) -> Result<CapReservation, CapError> {
        let now = Instant::now();
        let ttl = self.state.ttl;
        self.with_key(key_id, |state| {
            state.sweep(now);
            if let Some(open) = state.open.get(&id) {
                // A retry of a reservation that is still open: it stands as it was.
                return Ok(CapReservation {
                    id,
                    key_id: key_id.clone(),
                    caps: open.caps.clone(),
                    amount: open.amount,
                    at: open.at,
                });
            }
            state.prune(at);
            let refusal = caps
                .iter()
                .filter_map(|cap| state.refusal(cap, at, amount))
                .fold(None, binding);
            if let Some(refusal) = refusal {
                return Err(CapError::Exceeded(refusal));
            }
            for cap in caps.iter() {
                state.hold(cap, at, amount, true);
            }
            let deadline = now + ttl;
            let open = Open {
                caps: caps.clone(),
                amount,
                at,
                deadline,
            };
            state.open.insert(id, open);
            state.next_sweep = Some(state.next_sweep.map_or(deadline, |due| due.min(deadline)));
            Ok(CapReservation {
                id,
                key_id: key_id.clone(),
                caps: caps.clone(),
                amount,
                at,
            })
        })
    }

    fn settle_now(&self, reservation: &CapReservation, actual: Micros) -> CapSettlement {
        let now = Instant::now();
        let charged = self.with_existing(&reservation.key_id, |state| {
            state.sweep(now);
            let (caps, at) = match state.open.remove(&reservation.id) {
                Some(open) => {
                    for cap in open.caps.iter() {
                        state.hold(cap, open.at, open.amount, false);
                    }
                    (open.caps, open.at)
                }
                // Its hold went back already: what was used is charged as room allows.
                None if state.expired.remove(&reservation.id).is_some() => {
                    (reservation.caps.clone(), reservation.at)
                }
                // Settled before: a retry charges nothing.
                None => return 0,
            };
            let room = caps.iter().map(|cap| state.room(cap, at)).min();
            let charged = actual.min(room.unwrap_or(Micros::MAX));
            for cap in caps.iter() {
                state.spend(cap, at, charged);
            }
            charged
        });
        CapSettlement {
            charged: charged.unwrap_or(0),
        }
    }

    fn usage_now(&self, key_id: &str, caps: &[SpendCap], at: SystemTime) -> Vec<CapUsage> {
        let now = Instant::now();
        let usage = |state: Option<&KeyState>, cap: &SpendCap| {
            let (spent, reserved) = state.map_or((0, 0), |state| state.counted(cap, at));
            let resets_at = match cap.period() {
                CapPeriod::Rolling(period) => {
                    let slots = RollingSlots::new(period);
                    let last = state
                        .and_then(|state| state.rolling.get(&slots.period_millis()))
                        .and_then(|rolling| rolling.slots.range(slots.oldest(at)..).next_back());
                    last.map_or(at, |(slot, _)| slots.frees_at(*slot))
                }
                calendar => calendar.window(at).map_or(at, |window| window.end()),
            };
            CapUsage {
                cap: *cap,
                spent,
                reserved,
                resets_at,
            }
        };
        self.with_existing(key_id, |state| {
            state.sweep(now);
            caps.iter().map(|cap| usage(Some(state), cap)).collect()
        })
        .unwrap_or_else(|| caps.iter().map(|cap| usage(None, cap)).collect())
    }
}

fn lock(state: &Mutex<KeyState>) -> MutexGuard<'_, KeyState> {
    // A panic while holding the lock leaves the state consistent enough: each change is
    // bounded by saturating arithmetic, and reservations expire.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for InMemoryCapStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryCapStore")
            .field("keys", &self.state.keys.len())
            .field("reservation_ttl", &self.state.ttl)
            .finish()
    }
}

impl CapStore for InMemoryCapStore {
    type Reserve = Ready<Result<CapReservation, CapError>>;
    type Settle = Ready<Result<CapSettlement, CapError>>;
    type Usage = Ready<Result<Vec<CapUsage>, CapError>>;

    fn reserve(
        &self,
        id: ReservationId,
        key_id: &Arc<str>,
        caps: &Arc<[SpendCap]>,
        amount: Micros,
        at: SystemTime,
    ) -> Self::Reserve {
        ready(self.reserve_now(id, key_id, caps, amount, at))
    }

    fn settle(&self, reservation: CapReservation, actual: Micros) -> Self::Settle {
        ready(Ok(self.settle_now(&reservation, actual)))
    }

    fn release(&self, reservation: CapReservation) -> Self::Settle {
        self.settle(reservation, 0)
    }

    fn usage(&self, key_id: &str, caps: &[SpendCap], at: SystemTime) -> Self::Usage {
        ready(Ok(self.usage_now(key_id, caps, at)))
    }
}
