//! The Redis backends on loopback: latency percentiles of one rate-limit check and one
//! reserve (one call in flight), calls per second with 64 in flight on the one connection,
//! then criterion's timings of each. Starts its own `redis-server`.
//!
//! `cargo bench -p tollgate-redis`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tollgate_balance::{Ledger, ReservationId};
use tollgate_core::Rate;
use tollgate_ratelimit::{Check, RateLimitBackend, RuleKey, Scope};
use tollgate_redis::{Redis, RedisConfig, RedisLedger, RedisRateLimiter};
use tollgate_testkit::redis::RedisServer;

const SEQUENTIAL: usize = 20_000;
const IN_FLIGHT: usize = 64;
const LOAD_FOR: Duration = Duration::from_secs(3);

fn check() -> Vec<Check> {
    vec![Check {
        key: RuleKey::new(Scope::KeyRequests, Some(Arc::from("key_bench")), None),
        rate: Rate::per_second(1_000_000_000).expect("a rate"),
        cost: 1,
    }]
}

async fn one_check(limits: &RedisRateLimiter, checks: &[Check]) {
    limits.check(checks).await.expect("a check");
}

async fn one_reserve(ledger: &RedisLedger, account: &Arc<str>) {
    let reservation = ledger.reserve(ReservationId::new(), account, 1).await;
    black_box(reservation.expect("a reservation"));
}

/// p50, p99 and p99.9 of `SEQUENTIAL` calls, one at a time.
async fn percentiles<F: AsyncFn()>(call: F) -> [Duration; 3] {
    for _ in 0..2_000 {
        call().await;
    }
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    [at(0.50), at(0.99), at(0.999)]
}

/// Calls per second with `IN_FLIGHT` tasks sharing the connection.
async fn throughput<F, Fut>(call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let deadline = Instant::now() + LOAD_FOR;
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                while Instant::now() < deadline {
                    call().await;
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("a load task");
    }
    total as f64 / LOAD_FOR.as_secs_f64()
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

/// The backends on a connection made on `runtime` (its driver task runs there).
fn backends(runtime: &tokio::runtime::Runtime, url: String) -> (RedisRateLimiter, RedisLedger) {
    let config = RedisConfig::new(url).timeout(Duration::from_secs(1));
    let redis = runtime
        .block_on(Redis::connect(config))
        .expect("a connection");
    (redis.rate_limiter(), redis.ledger())
}

fn main() {
    let server = RedisServer::start_with(&["--appendonly", "no"]).expect("redis-server");
    let account: Arc<str> = Arc::from("acct_bench");
    let checks = check();

    // One call in flight: caller and connection on one thread, as a request's task and its
    // connection would be with no other load.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (limits, ledger) = backends(&single, server.url());
    single
        .block_on(ledger.top_up(&account, u64::MAX / 4))
        .expect("a top-up");
    let [p50, p99, p999] = single.block_on(percentiles(async || one_check(&limits, &checks).await));
    println!(
        "check, one in flight:   p50 {}  p99 {}  p99.9 {}",
        micros(p50),
        micros(p99),
        micros(p999)
    );
    let [p50, p99, p999] =
        single.block_on(percentiles(async || one_reserve(&ledger, &account).await));
    println!(
        "reserve, one in flight: p50 {}  p99 {}  p99.9 {}",
        micros(p50),
        micros(p99),
        micros(p999)
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (shared, _) = backends(&runtime, server.url());
    let per_second = runtime.block_on(throughput({
        let limits = shared.clone();
        let checks = checks.clone();
        move || {
            let limits = limits.clone();
            let checks = checks.clone();
            async move { one_check(&limits, &checks).await }
        }
    }));
    println!("checks per second, {IN_FLIGHT} in flight on one connection: {per_second:.0}");

    let mut criterion = Criterion::default().configure_from_args();
    criterion.bench_function("redis/check", |b| {
        b.to_async(&single).iter(|| one_check(&limits, &checks));
    });
    criterion.bench_function("redis/reserve", |b| {
        b.to_async(&single).iter(|| one_reserve(&ledger, &account));
    });
    criterion.final_summary();
}
