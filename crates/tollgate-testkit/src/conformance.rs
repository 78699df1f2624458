//! The conformance suite every state backend must pass: the same vectors run against the
//! in-memory backends and the Redis ones, and a third-party backend (Postgres, DynamoDB) can
//! run them too.
//!
//! Each function takes a backend, runs every vector against it with names of its own (so a
//! shared or persistent backend needs no cleanup), and panics with the vector's name and what
//! differed. Time is the backend's real clock, so durations are compared within a tolerance.
//!
//! Spend caps are the exception: their windows follow the instant the caller passes, so the
//! cap vectors move it across month ends, leap days and year ends exactly.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_balance::{InMemoryCapStore, InMemoryLedger};
//! use tollgate_ratelimit::GovernorBackend;
//! use tollgate_testkit::conformance;
//!
//! # tokio_test::block_on(async {
//! conformance::rate_limit_backend(&GovernorBackend::new()).await;
//! let ttl = Duration::from_millis(200);
//! conformance::ledger(&InMemoryLedger::with_reservation_ttl(ttl), ttl).await;
//! conformance::caps(&InMemoryCapStore::with_reservation_ttl(ttl), ttl).await;
//! # });
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tollgate_balance::{
    CapError, CapExceeded, CapReservation, CapStore, CapUsage, Ledger, LedgerError, ReservationId,
};
use tollgate_core::spend::{from_unix_millis, rfc3339};
use tollgate_core::{Rate, SpendCap};
use tollgate_ratelimit::{Check, Decision, QuotaState, RateLimitBackend, RuleKey, Scope};

/// How far a reported duration may be from the expected one: the vectors run on the
/// backend's real clock, and a network round trip or a busy machine takes time.
const TOLERANCE: Duration = Duration::from_secs(2);

/// Runs every rate-limit vector against `backend`: per-rule states (the values behind the
/// `X-RateLimit-*` headers), denials with their `Retry-After`, bursts, token costs, quotas
/// beyond 32 bits, all-or-nothing across rules, refunds, independence of keys, and exact
/// admission under concurrency.
pub async fn rate_limit_backend<B: RateLimitBackend>(backend: &B) {
    let run = unique("rl");
    sequence_with_headers(backend, &run).await;
    all_or_nothing(backend, &run).await;
    token_costs(backend, &run).await;
    cost_above_the_burst_never_fits(backend, &run).await;
    burst(backend, &run).await;
    large_quotas(backend, &run).await;
    refund(backend, &run).await;
    keys_are_independent(backend, &run).await;
    exact_under_concurrency(backend, &run).await;
}

/// Runs every ledger vector against `ledger`, whose reservations expire after `ttl` (keep it
/// short, 100 ms to 1 s: the expiry vector waits for it): reserve / settle / release
/// arithmetic, a balance that never goes negative, idempotent reserves and settlements,
/// expiry, and no overspending under concurrency.
pub async fn ledger<L: Ledger>(ledger: &L, ttl: Duration) {
    let run = unique("acct");
    unknown_account(ledger, &run).await;
    arithmetic(ledger, &run).await;
    settle_above_the_reservation(ledger, &run).await;
    zero_balance_refuses_everything(ledger, &run).await;
    idempotent(ledger, &run).await;
    expiry(ledger, &run, ttl).await;
    no_overspending_under_concurrency(ledger, &run).await;
}

/// A name no other run uses: the process-random part keeps runs against a persistent backend
/// apart.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn check(run: &str, name: &str, rate: Rate, cost: u64) -> Check {
    let key_id: Arc<str> = Arc::from(format!("{run}-{name}"));
    Check {
        key: RuleKey::new(Scope::KeyRequests, Some(key_id), None),
        rate,
        cost,
    }
}

fn model_check(run: &str, model: &str, rate: Rate, cost: u64) -> Check {
    let model: Arc<str> = Arc::from(format!("{run}-{model}"));
    Check {
        key: RuleKey::new(Scope::ModelTokens, None, Some(model)),
        rate,
        cost,
    }
}

fn rate(amount: u64, period: Duration) -> Rate {
    Rate::new(amount, period).expect("a valid test rate")
}

async fn states<B: RateLimitBackend>(
    vector: &str,
    backend: &B,
    checks: &[Check],
) -> Vec<QuotaState> {
    match backend.check(checks).await {
        Ok(Decision::Allowed(states)) => states.to_vec(),
        other => panic!("{vector}: expected the checks to be allowed, got {other:?}"),
    }
}

async fn denial<B: RateLimitBackend>(
    vector: &str,
    backend: &B,
    checks: &[Check],
) -> (usize, QuotaState, Option<Duration>) {
    match backend.check(checks).await {
        Ok(Decision::Denied {
            index,
            state,
            retry_after,
        }) => (index, state, retry_after),
        other => panic!("{vector}: expected a denial, got {other:?}"),
    }
}

#[track_caller]
fn assert_near(vector: &str, what: &str, actual: Duration, expected: Duration) {
    let difference = actual.abs_diff(expected);
    assert!(
        difference <= TOLERANCE,
        "{vector}: {what} is {actual:?}, expected about {expected:?}"
    );
}

async fn sequence_with_headers<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "3 per minute";
    let checks = [check(run, "sequence", rate(3, Duration::from_secs(60)), 1)];
    for (n, remaining) in [2, 1, 0].into_iter().enumerate() {
        let state = states(vector, backend, &checks).await[0];
        assert_eq!(state.limit, 3, "{vector}: limit");
        assert_eq!(
            state.remaining,
            remaining,
            "{vector}: remaining after {}",
            n + 1
        );
        // Full again once every charge has replenished: 20 s per request charged.
        let charged = 3 - remaining;
        assert_near(
            vector,
            "reset",
            state.reset,
            Duration::from_secs(20 * charged),
        );
    }
    let (index, state, retry_after) = denial(vector, backend, &checks).await;
    assert_eq!(
        (index, state.limit, state.remaining),
        (0, 3, 0),
        "{vector}: the denial's state"
    );
    let retry_after = retry_after.expect("a request of one fits later");
    assert_near(vector, "Retry-After", retry_after, Duration::from_secs(20));
    assert_near(
        vector,
        "reset of the denial",
        state.reset,
        Duration::from_secs(60),
    );
}

async fn all_or_nothing<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "all or nothing";
    let roomy = check(run, "roomy", rate(10, Duration::from_secs(60)), 1);
    let tight = model_check(run, "tight", rate(1, Duration::from_secs(60)), 1);
    let both = [roomy.clone(), tight.clone()];
    let first = states(vector, backend, &both).await;
    assert_eq!(
        (first[0].remaining, first[1].remaining),
        (9, 0),
        "{vector}: one state per check, in order"
    );
    let (index, _, _) = denial(vector, backend, &both).await;
    assert_eq!(index, 1, "{vector}: the second check denies");
    // The denied request charged nothing, the first rule included.
    let roomy_now = states(vector, backend, std::slice::from_ref(&roomy)).await;
    assert_eq!(
        roomy_now[0].remaining, 8,
        "{vector}: the denied request was charged"
    );
}

async fn token_costs<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "token costs";
    let quota = rate(1000, Duration::from_secs(60));
    let state = states(vector, backend, &[check(run, "tokens", quota, 400)]).await[0];
    assert_eq!(
        (state.limit, state.remaining),
        (1000, 600),
        "{vector}: after 400"
    );
    assert_near(vector, "reset", state.reset, Duration::from_secs(24));
    let (_, state, retry_after) =
        denial(vector, backend, &[check(run, "tokens", quota, 700)]).await;
    // 100 more tokens must replenish (6 s); until then, 600 of the 700 fit.
    assert_eq!(state.remaining, 600, "{vector}: remaining at the denial");
    assert_near(
        vector,
        "Retry-After",
        retry_after.expect("fits later"),
        Duration::from_secs(6),
    );
}

async fn cost_above_the_burst_never_fits<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "a cost above the burst";
    let checks = [check(run, "huge", rate(100, Duration::from_secs(60)), 101)];
    let (_, state, retry_after) = denial(vector, backend, &checks).await;
    assert_eq!(retry_after, None, "{vector}: never fits, so no Retry-After");
    assert_eq!(state.limit, 100, "{vector}: limit");
}

async fn burst<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "60 per minute, burst 5";
    let quota = rate(60, Duration::from_secs(60))
        .with_burst(5)
        .expect("burst");
    let checks = [check(run, "burst", quota, 1)];
    for remaining in (0..5).rev() {
        let state = states(vector, backend, &checks).await[0];
        assert_eq!((state.limit, state.remaining), (60, remaining), "{vector}");
    }
    let (_, _, retry_after) = denial(vector, backend, &checks).await;
    assert_near(
        vector,
        "Retry-After",
        retry_after.expect("fits later"),
        Duration::from_secs(1),
    );
}

async fn large_quotas<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "a quota beyond 32 bits";
    let amount = 10_000_000_000;
    let checks = [check(
        run,
        "large",
        rate(amount, Duration::from_secs(60)),
        1_000,
    )];
    let state = states(vector, backend, &checks).await[0];
    assert_eq!(state.limit, amount, "{vector}: limit");
    // A backend may count in coarser cells: within one part in a million.
    let expected = amount - 1_000;
    assert!(
        state.remaining <= expected && expected - state.remaining <= amount / 1_000_000,
        "{vector}: remaining {} after 1,000 of {amount}",
        state.remaining
    );
}

async fn refund<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "refund";
    let checks = [check(run, "refund", rate(2, Duration::from_secs(60)), 1)];
    states(vector, backend, &checks).await;
    backend.refund(&checks);
    // A network backend may finish the refund in the background.
    let deadline = tokio::time::Instant::now() + TOLERANCE;
    loop {
        let state = states(vector, backend, &checks).await[0];
        if state.remaining == 1 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{vector}: the refunded request still counts (remaining {})",
            state.remaining
        );
        // Give this probe back too, then look again.
        backend.refund(&checks);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn keys_are_independent<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "keys are independent";
    let quota = rate(1, Duration::from_secs(60));
    states(vector, backend, &[check(run, "alice", quota, 1)]).await;
    states(vector, backend, &[check(run, "bob", quota, 1)]).await;
    denial(vector, backend, &[check(run, "alice", quota, 1)]).await;
}

async fn exact_under_concurrency<B: RateLimitBackend>(backend: &B, run: &str) {
    let vector = "100 concurrent against 10";
    let checks = [
        check(run, "concurrent", rate(10, Duration::from_secs(60)), 1),
        model_check(
            run,
            "concurrent-model",
            rate(1_000, Duration::from_secs(60)),
            1,
        ),
    ];
    let allowed = concurrently(100, || backend.check(&checks))
        .await
        .into_iter()
        .filter(|result| matches!(result, Ok(Decision::Allowed(_))))
        .count();
    assert_eq!(allowed, 10, "{vector}: admitted");
}

/// Polls `n` calls of `call` together on this task.
async fn concurrently<F: Future>(n: usize, call: impl Fn() -> F) -> Vec<F::Output> {
    let calls: Vec<_> = (0..n).map(|_| call()).collect();
    futures_util::future::join_all(calls).await
}

async fn unknown_account<L: Ledger>(ledger: &L, run: &str) {
    let account: Arc<str> = Arc::from(format!("{run}-unknown"));
    let balance = ledger.balance(&account).await.expect("a balance");
    assert_eq!(balance, 0, "an unknown account holds nothing");
    match ledger.reserve(ReservationId::new(), &account, 1).await {
        Err(LedgerError::Insufficient {
            balance: 0,
            required: 1,
        }) => {}
        other => panic!("an unknown account: expected Insufficient, got {other:?}"),
    }
}

async fn arithmetic<L: Ledger>(ledger: &L, run: &str) {
    let vector = "reserve, settle, release";
    let account: Arc<str> = Arc::from(format!("{run}-arithmetic"));
    assert_eq!(ledger.top_up(&account, 1_000).await.expect("top up"), 1_000);
    let first = ledger
        .reserve(ReservationId::new(), &account, 600)
        .await
        .expect("600 of 1,000");
    assert_eq!(
        (first.amount, first.remaining),
        (600, 400),
        "{vector}: first reservation"
    );
    assert_eq!(
        &*first.account, &*account,
        "{vector}: the reservation's account"
    );
    match ledger.reserve(ReservationId::new(), &account, 600).await {
        Err(LedgerError::Insufficient {
            balance: 400,
            required: 600,
        }) => {}
        other => panic!("{vector}: expected 400 not to cover 600, got {other:?}"),
    }
    assert_eq!(
        ledger.balance(&account).await.expect("balance"),
        400,
        "{vector}: available"
    );
    let second = ledger
        .reserve(ReservationId::new(), &account, 300)
        .await
        .expect("300 of 400");
    let settled = ledger.settle(first, 250).await.expect("settle");
    assert_eq!(
        (settled.charged, settled.balance),
        (250, 450),
        "{vector}: settle 250 of 600"
    );
    let released = ledger.release(second).await.expect("release");
    assert_eq!(
        (released.charged, released.balance),
        (0, 750),
        "{vector}: release 300"
    );
    assert_eq!(
        ledger.top_up(&account, 50).await.expect("top up"),
        800,
        "{vector}: top up"
    );
    assert_eq!(
        ledger.balance(&account).await.expect("balance"),
        800,
        "{vector}: at the end"
    );
}

async fn settle_above_the_reservation<L: Ledger>(ledger: &L, run: &str) {
    let vector = "settle above the reservation";
    let account: Arc<str> = Arc::from(format!("{run}-above"));
    ledger.top_up(&account, 750).await.expect("top up");
    let reservation = ledger
        .reserve(ReservationId::new(), &account, 100)
        .await
        .expect("100");
    let settled = ledger.settle(reservation, 900).await.expect("settle");
    // Everything the account held, reservation included, and never below zero.
    assert_eq!((settled.charged, settled.balance), (750, 0), "{vector}");
    let reservation = ledger.reserve(ReservationId::new(), &account, 0);
    assert!(
        reservation.await.is_err(),
        "{vector}: an empty account reserves nothing"
    );
}

async fn zero_balance_refuses_everything<L: Ledger>(ledger: &L, run: &str) {
    let vector = "a zero balance";
    let account: Arc<str> = Arc::from(format!("{run}-zero"));
    ledger.top_up(&account, 0).await.expect("top up");
    match ledger.reserve(ReservationId::new(), &account, 0).await {
        Err(LedgerError::Insufficient {
            balance: 0,
            required: 0,
        }) => {}
        other => panic!("{vector}: expected a free request to be refused too, got {other:?}"),
    }
}

async fn idempotent<L: Ledger>(ledger: &L, run: &str) {
    let vector = "idempotent";
    let account: Arc<str> = Arc::from(format!("{run}-idempotent"));
    ledger.top_up(&account, 1_000).await.expect("top up");
    let id = ReservationId::new();
    let first = ledger.reserve(id, &account, 400).await.expect("400");
    let retried = ledger.reserve(id, &account, 400).await.expect("the retry");
    assert_eq!(
        (retried.id, retried.amount),
        (id, 400),
        "{vector}: the same reservation"
    );
    assert_eq!(
        ledger.balance(&account).await.expect("balance"),
        600,
        "{vector}: reserved once"
    );
    let settled = ledger.settle(first.clone(), 100).await.expect("settle");
    assert_eq!(
        (settled.charged, settled.balance),
        (100, 900),
        "{vector}: settled"
    );
    let again = ledger
        .settle(first.clone(), 100)
        .await
        .expect("settle again");
    assert_eq!(
        (again.charged, again.balance),
        (0, 900),
        "{vector}: a second settlement"
    );
    let release = ledger.release(first).await.expect("release after settling");
    assert_eq!(
        (release.charged, release.balance),
        (0, 900),
        "{vector}: a late release"
    );
}

async fn expiry<L: Ledger>(ledger: &L, run: &str, ttl: Duration) {
    let vector = "expiry";
    let account: Arc<str> = Arc::from(format!("{run}-expiry"));
    ledger.top_up(&account, 1_000).await.expect("top up");
    let crashed = ledger
        .reserve(ReservationId::new(), &account, 700)
        .await
        .expect("700");
    let running = ledger
        .reserve(ReservationId::new(), &account, 200)
        .await
        .expect("200");
    assert_eq!(
        ledger.balance(&account).await.expect("balance"),
        100,
        "{vector}: held"
    );
    let deadline = tokio::time::Instant::now() + ttl * 2 + TOLERANCE;
    loop {
        tokio::time::sleep(ttl / 4).await;
        if ledger.balance(&account).await.expect("balance") == 1_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{vector}: expired reservations did not flow back within twice the time to live"
        );
    }
    // The request that outlived its reservation still pays for what it used.
    let settled = ledger
        .settle(running, 150)
        .await
        .expect("a late settlement");
    assert_eq!(
        (settled.charged, settled.balance),
        (150, 850),
        "{vector}: a late settlement"
    );
    let released = ledger.release(crashed).await.expect("a late release");
    assert_eq!(
        (released.charged, released.balance),
        (0, 850),
        "{vector}: a late release"
    );
    let retried = ledger
        .settle(never_reserved(&account), 10)
        .await
        .expect("unknown id");
    assert_eq!(
        retried.charged, 0,
        "{vector}: an id the ledger never saw charges nothing"
    );
}

/// A reservation the ledger never made.
fn never_reserved(account: &Arc<str>) -> tollgate_balance::Reservation {
    tollgate_balance::Reservation {
        id: ReservationId::new(),
        account: account.clone(),
        amount: 10,
        remaining: 0,
    }
}

async fn no_overspending_under_concurrency<L: Ledger>(ledger: &L, run: &str) {
    let vector = "100 concurrent reservations against 10";
    let account: Arc<str> = Arc::from(format!("{run}-concurrent"));
    ledger.top_up(&account, 1_000).await.expect("top up");
    let results = concurrently(100, || ledger.reserve(ReservationId::new(), &account, 100)).await;
    let reservations: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!(reservations.len(), 10, "{vector}: reserved");
    assert_eq!(
        ledger.balance(&account).await.expect("balance"),
        0,
        "{vector}: held"
    );
    let mut charged = 0;
    for (n, reservation) in reservations.into_iter().enumerate() {
        charged += ledger
            .settle(reservation, n as u64)
            .await
            .expect("settle")
            .charged;
    }
    assert_eq!(charged, 45, "{vector}: charged");
    let balance = ledger.balance(&account).await.expect("balance");
    assert_eq!(
        balance,
        1_000 - 45,
        "{vector}: the start minus what was settled"
    );
}

/// Runs every spend-cap vector against `store`, whose reservations expire after `ttl` (keep it
/// short, 100 ms to 1 s: the expiry vector waits for it): reserve / settle / release
/// arithmetic, settlements cut to a cap's room, all or nothing across a key's caps (and which
/// refusal is reported), idempotency, expiry, a settlement after its window ended, a month end
/// that resets exactly once, leap days and year ends for days, weeks and months, rolling
/// periods never exceeded over any trailing period, independent keys, and 1,000 concurrent
/// reservations against a cap for 10.
pub async fn caps<C: CapStore>(store: &C, ttl: Duration) {
    let run = unique("key");
    cap_arithmetic(store, &run).await;
    cap_settle_above_the_reservation(store, &run).await;
    cap_all_or_nothing(store, &run).await;
    cap_idempotent(store, &run).await;
    cap_expiry(store, &run, ttl).await;
    cap_settle_after_the_window(store, &run).await;
    cap_month_end_resets_exactly_once(store, &run).await;
    cap_leap_days_and_year_ends(store, &run).await;
    cap_rolling(store, &run).await;
    cap_keys_are_independent(store, &run).await;
    cap_exact_under_concurrency(store, &run).await;
}

/// The instant `text` (`YYYY-MM-DDTHH:MM:SS[.mmm]Z`) names, for vectors that read as dates.
fn utc(text: &str) -> SystemTime {
    let field = |range: std::ops::Range<usize>| -> i64 {
        text.get(range)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("{text} is not YYYY-MM-DDTHH:MM:SS[.mmm]Z"))
    };
    let (year, month, day) = (field(0..4), field(5..7), field(8..10));
    let seconds = field(11..13) * 3_600 + field(14..16) * 60 + field(17..19);
    let millis = if text.len() > 20 { field(20..23) } else { 0 };
    // Days since 1970-01-01 (H. Hinnant's days_from_civil).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted.rem_euclid(400);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + year_of_era * 365 + year_of_era / 4 - year_of_era / 100
        + day_of_year
        - 719_468;
    from_unix_millis((days * 86_400 + seconds) * 1_000 + millis)
}

fn cap_key(run: &str, name: &str) -> Arc<str> {
    Arc::from(format!("{run}-{name}"))
}

fn cap_list(caps: &[SpendCap]) -> Arc<[SpendCap]> {
    Arc::from(caps)
}

fn monthly(limit: u64) -> SpendCap {
    SpendCap::monthly(limit).expect("a valid test cap")
}

async fn reserve_cap<C: CapStore>(
    vector: &str,
    store: &C,
    key: &Arc<str>,
    caps: &Arc<[SpendCap]>,
    amount: u64,
    at: SystemTime,
) -> CapReservation {
    match store
        .reserve(ReservationId::new(), key, caps, amount, at)
        .await
    {
        Ok(reservation) => reservation,
        other => panic!(
            "{vector}: expected {amount} to fit at {}, got {other:?}",
            rfc3339(at)
        ),
    }
}

async fn cap_refusal<C: CapStore>(
    vector: &str,
    store: &C,
    key: &Arc<str>,
    caps: &Arc<[SpendCap]>,
    amount: u64,
    at: SystemTime,
) -> CapExceeded {
    match store
        .reserve(ReservationId::new(), key, caps, amount, at)
        .await
    {
        Err(CapError::Exceeded(exceeded)) => exceeded,
        other => panic!(
            "{vector}: expected {amount} not to fit at {}, got {other:?}",
            rfc3339(at)
        ),
    }
}

async fn cap_usage<C: CapStore>(
    store: &C,
    key: &str,
    caps: &[SpendCap],
    at: SystemTime,
) -> Vec<CapUsage> {
    store.usage(key, caps, at).await.expect("usage")
}

/// (spent, reserved) of each cap.
async fn spent_and_reserved<C: CapStore>(
    store: &C,
    key: &str,
    caps: &[SpendCap],
    at: SystemTime,
) -> Vec<(u64, u64)> {
    cap_usage(store, key, caps, at)
        .await
        .iter()
        .map(|usage| (usage.spent, usage.reserved))
        .collect()
}

async fn cap_arithmetic<C: CapStore>(store: &C, run: &str) {
    let vector = "cap reserve, settle, release";
    let key = cap_key(run, "arithmetic");
    let caps = cap_list(&[monthly(1_000)]);
    let at = utc("2026-06-15T12:00:00Z");
    let fresh = cap_usage(store, &key, &caps, at).await;
    assert_eq!(
        (
            fresh[0].spent,
            fresh[0].reserved,
            rfc3339(fresh[0].resets_at)
        ),
        (0, 0, "2026-07-01T00:00:00Z".to_owned()),
        "{vector}: an unknown key has spent nothing"
    );
    let first = reserve_cap(vector, store, &key, &caps, 600, at).await;
    assert_eq!(
        (first.amount, first.at, &*first.key_id, &*first.caps),
        (600, at, &*key, &*caps),
        "{vector}: the reservation"
    );
    let refused = cap_refusal(vector, store, &key, &caps, 600, at).await;
    assert_eq!(
        (
            refused.cap,
            refused.spent,
            refused.reserved,
            refused.required
        ),
        (monthly(1_000), 0, 600, 600),
        "{vector}: 600 held leaves no room for 600"
    );
    assert_eq!(
        rfc3339(refused.resets_at),
        "2026-07-01T00:00:00Z",
        "{vector}: resets at the month's end"
    );
    let second = reserve_cap(vector, store, &key, &caps, 300, at).await;
    let settled = store.settle(first, 250).await.expect("settle");
    assert_eq!(settled.charged, 250, "{vector}: settle 250 of 600");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(250, 300)],
        "{vector}: after the settlement"
    );
    let released = store.release(second).await.expect("release");
    assert_eq!(released.charged, 0, "{vector}: a release charges nothing");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(250, 0)],
        "{vector}: after the release"
    );
    let rest = reserve_cap(vector, store, &key, &caps, 750, at).await;
    let refused = cap_refusal(vector, store, &key, &caps, 1, at).await;
    assert_eq!(
        (refused.spent, refused.reserved),
        (250, 750),
        "{vector}: a full cap refuses one more"
    );
    let free = reserve_cap(vector, store, &key, &caps, 0, at).await;
    store.release(free).await.expect("release");
    store.settle(rest, 750).await.expect("settle");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(1_000, 0)],
        "{vector}: spent to the cap"
    );
}

async fn cap_settle_above_the_reservation<C: CapStore>(store: &C, run: &str) {
    let vector = "cap settlement above the reservation";
    let key = cap_key(run, "above");
    let caps = cap_list(&[monthly(1_000)]);
    let at = utc("2026-06-15T12:00:00Z");
    let greedy = reserve_cap(vector, store, &key, &caps, 100, at).await;
    let other = reserve_cap(vector, store, &key, &caps, 500, at).await;
    // The upstream ignored max_tokens: the cap counts no more than its room, the other
    // request's hold included.
    let settled = store.settle(greedy, 900).await.expect("settle");
    assert_eq!(settled.charged, 500, "{vector}: cut to the room");
    let settled = store.settle(other, 500).await.expect("settle");
    assert_eq!(settled.charged, 500, "{vector}: the other request");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(1_000, 0)],
        "{vector}: never past the cap"
    );
}

async fn cap_all_or_nothing<C: CapStore>(store: &C, run: &str) {
    let vector = "caps all or nothing";
    let key = cap_key(run, "all");
    let daily = SpendCap::daily(500).expect("cap");
    let caps = cap_list(&[daily, monthly(10_000)]);
    let at = utc("2026-06-15T12:00:00Z");
    reserve_cap(vector, store, &key, &caps, 400, at).await;
    let refused = cap_refusal(vector, store, &key, &caps, 200, at).await;
    assert_eq!(
        (refused.cap, rfc3339(refused.resets_at)),
        (daily, "2026-06-16T00:00:00Z".to_owned()),
        "{vector}: the daily cap refuses"
    );
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(0, 400), (0, 400)],
        "{vector}: the refused request held nothing on the monthly cap"
    );
    let tomorrow = utc("2026-06-16T00:00:00Z");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, tomorrow).await,
        [(0, 0), (0, 400)],
        "{vector}: the next day's window is another"
    );
    // When several caps refuse, the one that resets last is reported.
    let key = cap_key(run, "binding");
    let caps = cap_list(&[SpendCap::daily(100).expect("cap"), monthly(100)]);
    let refused = cap_refusal(vector, store, &key, &caps, 150, at).await;
    assert_eq!(
        (refused.cap, rfc3339(refused.resets_at)),
        (monthly(100), "2026-07-01T00:00:00Z".to_owned()),
        "{vector}: the binding refusal"
    );
}

async fn cap_idempotent<C: CapStore>(store: &C, run: &str) {
    let vector = "caps idempotent";
    let key = cap_key(run, "idempotent");
    let caps = cap_list(&[monthly(1_000), SpendCap::daily(1_000).expect("cap")]);
    let at = utc("2026-06-15T12:00:00Z");
    let id = ReservationId::new();
    let first = store.reserve(id, &key, &caps, 400, at).await.expect("400");
    // A retry, even one whose clock moved on, stands as the first.
    let later = at + Duration::from_secs(60);
    let retried = store
        .reserve(id, &key, &caps, 400, later)
        .await
        .expect("the retry");
    assert_eq!(retried, first, "{vector}: the same reservation");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(0, 400), (0, 400)],
        "{vector}: held once"
    );
    let settled = store.settle(first.clone(), 100).await.expect("settle");
    assert_eq!(settled.charged, 100, "{vector}: settled");
    let again = store.settle(first.clone(), 100).await.expect("again");
    assert_eq!(again.charged, 0, "{vector}: a second settlement");
    let late = store.release(first).await.expect("release");
    assert_eq!(late.charged, 0, "{vector}: a late release");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(100, 0), (100, 0)],
        "{vector}: charged once"
    );
}

async fn cap_expiry<C: CapStore>(store: &C, run: &str, ttl: Duration) {
    let vector = "cap expiry";
    let key = cap_key(run, "expiry");
    let caps = cap_list(&[monthly(1_000)]);
    let at = utc("2026-06-15T12:00:00Z");
    let crashed = reserve_cap(vector, store, &key, &caps, 700, at).await;
    let running = reserve_cap(vector, store, &key, &caps, 200, at).await;
    let deadline = tokio::time::Instant::now() + ttl * 2 + TOLERANCE;
    loop {
        tokio::time::sleep(ttl / 4).await;
        if spent_and_reserved(store, &key, &caps, at).await == [(0, 0)] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{vector}: expired reservations still hold after twice the time to live"
        );
    }
    // The request that outlived its reservation still counts what it used.
    let settled = store.settle(running, 150).await.expect("a late settlement");
    assert_eq!(settled.charged, 150, "{vector}: a late settlement");
    let released = store.release(crashed).await.expect("a late release");
    assert_eq!(released.charged, 0, "{vector}: a late release");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(150, 0)],
        "{vector}: at the end"
    );
    let never = CapReservation {
        id: ReservationId::new(),
        key_id: key.clone(),
        caps: caps.clone(),
        amount: 10,
        at,
    };
    let settled = store.settle(never, 10).await.expect("unknown id");
    assert_eq!(
        settled.charged, 0,
        "{vector}: an id the store never saw charges nothing"
    );
}

async fn cap_settle_after_the_window<C: CapStore>(store: &C, run: &str) {
    let vector = "a settlement after its window ended";
    let key = cap_key(run, "late");
    let caps = cap_list(&[monthly(1_000)]);
    let january = utc("2027-01-31T23:59:59.999Z");
    let february = utc("2027-02-01T00:00:00Z");
    let reservation = reserve_cap(vector, store, &key, &caps, 300, january).await;
    assert_eq!(
        spent_and_reserved(store, &key, &caps, february).await,
        [(0, 0)],
        "{vector}: February holds nothing for January's request"
    );
    let settled = store.settle(reservation, 200).await.expect("settle");
    assert_eq!(settled.charged, 200, "{vector}: charged");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, january).await,
        [(200, 0)],
        "{vector}: charged to January"
    );
    assert_eq!(
        spent_and_reserved(store, &key, &caps, february).await,
        [(0, 0)],
        "{vector}: February untouched"
    );
    reserve_cap(vector, store, &key, &caps, 1_000, february).await;
}

/// The instants of `at` at which the whole of `cap` could be reserved, each spent in full:
/// one per window the walk enters, so the resets are the instants after the first.
async fn admitted_walk<C: CapStore>(
    store: &C,
    key: &Arc<str>,
    cap: SpendCap,
    instants: impl IntoIterator<Item = SystemTime>,
) -> Vec<String> {
    let caps = cap_list(&[cap]);
    let mut admitted = Vec::new();
    for at in instants {
        match store
            .reserve(ReservationId::new(), key, &caps, cap.limit(), at)
            .await
        {
            Ok(reservation) => {
                let settled = store
                    .settle(reservation, cap.limit())
                    .await
                    .expect("settle");
                assert_eq!(settled.charged, cap.limit(), "spent in full");
                admitted.push(rfc3339(at));
            }
            Err(CapError::Exceeded(_)) => {}
            Err(error) => panic!("the walk at {}: {error}", rfc3339(at)),
        }
    }
    admitted
}

/// From `from` to `to` included, every `step`, and the millisecond before each of `edges`.
fn instants(from: &str, to: &str, step: Duration, edges: &[&str]) -> Vec<SystemTime> {
    let (from, to) = (utc(from), utc(to));
    let mut instants: Vec<SystemTime> =
        std::iter::successors(Some(from), |at| Some(*at + step).filter(|next| *next <= to))
            .collect();
    instants.extend(
        edges
            .iter()
            .map(|edge| utc(edge) - Duration::from_millis(1)),
    );
    instants.sort();
    instants
}

async fn cap_month_end_resets_exactly_once<C: CapStore>(store: &C, run: &str) {
    let vector = "a month end resets exactly once";
    let key = cap_key(run, "month-end");
    let hour = Duration::from_secs(3_600);
    let walk = instants(
        "2026-12-25T00:00:00Z",
        "2027-01-07T23:00:00Z",
        hour,
        &["2027-01-01T00:00:00Z"],
    );
    assert_eq!(
        admitted_walk(store, &key, monthly(1_000), walk).await,
        ["2026-12-25T00:00:00Z", "2027-01-01T00:00:00Z"],
        "{vector}: admitted at"
    );
    // To the second around the boundary.
    let key = cap_key(run, "month-end-seconds");
    let walk = instants(
        "2027-01-31T23:59:00Z",
        "2027-02-01T00:01:00Z",
        Duration::from_secs(1),
        &["2027-02-01T00:00:00Z"],
    );
    assert_eq!(
        admitted_walk(store, &key, monthly(1_000), walk).await,
        ["2027-01-31T23:59:00Z", "2027-02-01T00:00:00Z"],
        "{vector}: admitted at"
    );
}

/// A walk of one cap over the calendar, hour by hour, and where it must be admitted.
struct CalendarWalk {
    vector: &'static str,
    cap: SpendCap,
    from: &'static str,
    to: &'static str,
    /// Boundaries: the walk also visits the millisecond before each.
    edges: &'static [&'static str],
    admitted: &'static [&'static str],
}

async fn cap_leap_days_and_year_ends<C: CapStore>(store: &C, run: &str) {
    let hour = Duration::from_secs(3_600);
    let daily = SpendCap::daily(1_000).expect("cap");
    let weekly = SpendCap::weekly(1_000).expect("cap");
    let walks = [
        CalendarWalk {
            vector: "a leap day is a day",
            cap: daily,
            from: "2028-02-28T00:00:00Z",
            to: "2028-03-01T23:00:00Z",
            edges: &["2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"],
            admitted: &[
                "2028-02-28T00:00:00Z",
                "2028-02-29T00:00:00Z",
                "2028-03-01T00:00:00Z",
            ],
        },
        CalendarWalk {
            vector: "February of a leap year ends after the 29th",
            cap: monthly(1_000),
            from: "2028-02-28T00:00:00Z",
            to: "2028-03-01T23:00:00Z",
            edges: &["2028-03-01T00:00:00Z"],
            admitted: &["2028-02-28T00:00:00Z", "2028-03-01T00:00:00Z"],
        },
        CalendarWalk {
            vector: "February of a common year ends after the 28th",
            cap: monthly(1_000),
            from: "2027-02-27T00:00:00Z",
            to: "2027-03-01T23:00:00Z",
            edges: &["2027-03-01T00:00:00Z"],
            admitted: &["2027-02-27T00:00:00Z", "2027-03-01T00:00:00Z"],
        },
        CalendarWalk {
            vector: "a year end is a day's end",
            cap: daily,
            from: "2026-12-31T00:00:00Z",
            to: "2027-01-01T23:00:00Z",
            edges: &["2027-01-01T00:00:00Z"],
            admitted: &["2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z"],
        },
        CalendarWalk {
            vector: "an ISO week runs across a year end",
            cap: weekly,
            from: "2026-12-27T00:00:00Z",
            to: "2027-01-05T00:00:00Z",
            edges: &[
                "2026-12-28T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "2027-01-04T00:00:00Z",
            ],
            admitted: &[
                "2026-12-27T00:00:00Z",
                "2026-12-28T00:00:00Z",
                "2027-01-04T00:00:00Z",
            ],
        },
        CalendarWalk {
            vector: "a week holding a leap day",
            cap: weekly,
            from: "2028-02-27T00:00:00Z",
            to: "2028-03-06T00:00:00Z",
            edges: &["2028-02-28T00:00:00Z", "2028-03-06T00:00:00Z"],
            admitted: &[
                "2028-02-27T00:00:00Z",
                "2028-02-28T00:00:00Z",
                "2028-03-06T00:00:00Z",
            ],
        },
    ];
    for (n, walk) in walks.into_iter().enumerate() {
        let key = cap_key(run, &format!("calendar-{n}"));
        let instants = instants(walk.from, walk.to, hour, walk.edges);
        assert_eq!(
            admitted_walk(store, &key, walk.cap, instants).await,
            walk.admitted,
            "{}: admitted at",
            walk.vector
        );
    }
}

async fn cap_rolling<C: CapStore>(store: &C, run: &str) {
    let vector = "a rolling hour";
    let key = cap_key(run, "rolling");
    let hour = Duration::from_secs(3_600);
    let cap = SpendCap::rolling(1_000, hour).expect("cap");
    let caps = cap_list(&[cap]);
    let start = utc("2026-06-15T12:00:30Z");
    let spent = reserve_cap(vector, store, &key, &caps, 600, start).await;
    store.settle(spent, 600).await.expect("settle");
    let refused = cap_refusal(vector, store, &key, &caps, 600, start + hour / 2).await;
    assert_eq!(
        (refused.cap, refused.spent, refused.reserved),
        (cap, 600, 0),
        "{vector}: the refusal"
    );
    // Counted in one-minute slots: spent in the 12:00 slot counts until 13:01.
    assert_eq!(
        rfc3339(refused.resets_at),
        "2026-06-15T13:01:00Z",
        "{vector}: resets when the spend leaves the period"
    );
    cap_refusal(
        vector,
        store,
        &key,
        &caps,
        600,
        utc("2026-06-15T13:00:59.999Z"),
    )
    .await;
    let usage = cap_usage(store, &key, &caps, start + hour / 2).await;
    assert_eq!(
        (usage[0].spent, rfc3339(usage[0].resets_at)),
        (600, "2026-06-15T13:01:00Z".to_owned()),
        "{vector}: usage"
    );
    let later = reserve_cap(vector, store, &key, &caps, 600, utc("2026-06-15T13:01:00Z")).await;
    store.release(later).await.expect("release");

    // Walked minute by minute for three hours, admitting 300 whenever it fits: no trailing
    // hour ever holds more than the cap.
    let vector = "a rolling hour is never exceeded";
    let key = cap_key(run, "rolling-walk");
    let walk = instants(
        "2026-06-15T00:00:00Z",
        "2026-06-15T03:00:00Z",
        Duration::from_secs(60),
        &[],
    );
    let mut admitted = Vec::new();
    for at in walk {
        if let Ok(reservation) = store
            .reserve(ReservationId::new(), &key, &caps, 300, at)
            .await
        {
            store.settle(reservation, 300).await.expect("settle");
            admitted.push(at);
        }
    }
    for at in &admitted {
        let in_the_hour = admitted
            .iter()
            .filter(|other| *other <= at && at.duration_since(**other).is_ok_and(|d| d < hour))
            .count();
        assert!(
            in_the_hour * 300 <= 1_000,
            "{vector}: {in_the_hour} admitted in the hour to {}",
            rfc3339(*at)
        );
    }
    // Three fit at once, then three more each time the first of them has left the hour.
    assert_eq!(admitted.len(), 9, "{vector}: admitted");
}

async fn cap_keys_are_independent<C: CapStore>(store: &C, run: &str) {
    let vector = "cap keys are independent";
    let caps = cap_list(&[monthly(100)]);
    let at = utc("2026-06-15T12:00:00Z");
    let alice = cap_key(run, "alice");
    let bob = cap_key(run, "bob");
    reserve_cap(vector, store, &alice, &caps, 100, at).await;
    reserve_cap(vector, store, &bob, &caps, 100, at).await;
    cap_refusal(vector, store, &alice, &caps, 1, at).await;
}

async fn cap_exact_under_concurrency<C: CapStore>(store: &C, run: &str) {
    let vector = "1,000 concurrent reservations against a cap for 10";
    let key = cap_key(run, "concurrent");
    let caps = cap_list(&[monthly(1_000), SpendCap::daily(1_000_000).expect("cap")]);
    let at = utc("2026-06-30T23:59:59.999Z");
    let results = concurrently(1_000, || {
        store.reserve(ReservationId::new(), &key, &caps, 100, at)
    })
    .await;
    let mut reservations = Vec::new();
    for result in results {
        match result {
            Ok(reservation) => reservations.push(reservation),
            Err(CapError::Exceeded(_)) => {}
            Err(error) => panic!("{vector}: {error}"),
        }
    }
    assert_eq!(reservations.len(), 10, "{vector}: reserved");
    let mut charged = 0;
    for (n, reservation) in reservations.into_iter().enumerate() {
        charged += store
            .settle(reservation, n as u64)
            .await
            .expect("settle")
            .charged;
    }
    assert_eq!(charged, 45, "{vector}: charged");
    assert_eq!(
        spent_and_reserved(store, &key, &caps, at).await,
        [(45, 0), (45, 0)],
        "{vector}: spent"
    );
}
