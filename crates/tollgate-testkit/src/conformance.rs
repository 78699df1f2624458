//! The conformance suite every state backend must pass: the same vectors run against the
//! in-memory backends and the Redis ones, and a third-party backend (Postgres, DynamoDB) can
//! run them too.
//!
//! Each function takes a backend, runs every vector against it with names of its own (so a
//! shared or persistent backend needs no cleanup), and panics with the vector's name and what
//! differed. Time is the backend's real clock, so durations are compared within a tolerance.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_balance::InMemoryLedger;
//! use tollgate_ratelimit::GovernorBackend;
//! use tollgate_testkit::conformance;
//!
//! # tokio_test::block_on(async {
//! conformance::rate_limit_backend(&GovernorBackend::new()).await;
//! let ttl = Duration::from_millis(200);
//! conformance::ledger(&InMemoryLedger::with_reservation_ttl(ttl), ttl).await;
//! # });
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tollgate_balance::{Ledger, LedgerError, ReservationId};
use tollgate_core::Rate;
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
