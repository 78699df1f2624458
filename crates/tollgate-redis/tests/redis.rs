//! The Redis backends against real `redis-server` processes started by the test: the
//! conformance suite on a single node and on a three-master cluster, failure behaviour, and
//! key revocation across replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_auth::{KeyDigest, KeyRecord, KeyStore};
use tollgate_balance::{CapError, CapStore, Ledger, LedgerError, ReservationId};
use tollgate_core::{Principal, Rate, SpendCap};
use tollgate_ratelimit::{Check, Decision, RateLimitBackend, RuleKey, Scope};
use tollgate_redis::{OnFailure, Redis, RedisConfig};
use tollgate_testkit::conformance;
use tollgate_testkit::redis::{RedisCluster, RedisServer};

/// Generous for a debug build on a loaded 2-core machine; the default (50 ms) is for
/// production.
const TIMEOUT: Duration = Duration::from_secs(5);

const TTL: Duration = Duration::from_millis(300);

async fn connect(url: String) -> Redis {
    Redis::connect(RedisConfig::new(url).timeout(TIMEOUT))
        .await
        .expect("a connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_conforms() {
    let server = RedisServer::start().unwrap();
    let redis = connect(server.url()).await;
    conformance::rate_limit_backend(&redis.rate_limiter()).await;
    conformance::ledger(&redis.ledger().reservation_ttl(TTL), TTL).await;
    conformance::caps(&redis.cap_store().reservation_ttl(TTL), TTL).await;
}

/// A balance of 1e18 micro-units was stored as "1e+18" by the script's doubles, and every
/// request after it failed. Balances are bounded below 2^53 instead, and refused above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_beyond_what_the_script_keeps_exactly_are_refused() {
    const LARGEST: u64 = (1 << 53) - 1;
    let server = RedisServer::start().unwrap();
    let ledger = connect(server.url()).await.ledger();
    assert!(
        ledger
            .open_account("huge", 1_000_000_000_000_000_000)
            .await
            .is_err()
    );
    assert!(ledger.open_account("acct", LARGEST - 10).await.unwrap());
    assert!(ledger.top_up("acct", 11).await.is_err());
    assert_eq!(ledger.top_up("acct", 10).await.unwrap(), LARGEST);
    let held = ledger
        .reserve(ReservationId::new(), &Arc::from("acct"), 1_000)
        .await
        .unwrap();
    ledger.settle(held, 400).await.unwrap();
    assert_eq!(ledger.balance("acct").await.unwrap(), LARGEST - 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_cluster_conforms() {
    let cluster = RedisCluster::start(3).unwrap();
    let config = RedisConfig::cluster(cluster.urls()).timeout(TIMEOUT);
    let redis = Redis::connect(config).await.expect("a cluster connection");
    conformance::rate_limit_backend(&redis.rate_limiter()).await;
    conformance::ledger(&redis.ledger().reservation_ttl(TTL), TTL).await;
    conformance::caps(&redis.cap_store().reservation_ttl(TTL), TTL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_rules_span_slots_is_compensated_when_one_denies() {
    let cluster = RedisCluster::start(3).unwrap();
    let redis = Redis::connect(RedisConfig::cluster(cluster.urls()).timeout(TIMEOUT))
        .await
        .unwrap();
    let limits = redis.rate_limiter();
    let per_key = |key: &str| Check {
        key: RuleKey::new(Scope::KeyRequests, Some(Arc::from(key)), None),
        rate: Rate::per_minute(100).unwrap(),
        cost: 1,
    };
    let per_model = Check {
        key: RuleKey::new(Scope::ModelRequests, None, Some(Arc::from("gpt-5.4"))),
        rate: Rate::per_minute(10).unwrap(),
        cost: 1,
    };
    // 40 callers race for the model's 10; each also charges its own key's rule, in another
    // slot.
    let calls: Vec<_> = (0..40)
        .map(|n| {
            let limits = limits.clone();
            let checks = [per_key(&format!("key_{}", n % 4)), per_model.clone()];
            tokio::spawn(async move { limits.check(&checks).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for call in calls {
        if matches!(call.await.unwrap(), Decision::Allowed(_)) {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "the model's rule admits exactly its quota");
    // The 30 denied requests gave back what they charged on their keys' rules.
    for key in 0..4 {
        let probe = [per_key(&format!("key_{key}"))];
        let Decision::Allowed(states) = limits.check(&probe).await.unwrap() else {
            panic!("a key's own rule has room")
        };
        let admitted_on_key = 100 - 1 - states[0].remaining;
        assert!(
            admitted_on_key <= 10,
            "key_{key} still holds {admitted_on_key} charges"
        );
    }
}

fn one_check(key: &str) -> [Check; 1] {
    [Check {
        key: RuleKey::new(Scope::KeyRequests, Some(Arc::from(key)), None),
        rate: Rate::per_minute(1_000_000).unwrap(),
        cost: 1,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_closed_or_open_without_waiting_and_recovers_within_a_second() {
    let mut server = RedisServer::start().unwrap();
    let redis = connect(server.url()).await;
    let closed = redis.rate_limiter();
    let open = redis.rate_limiter().on_failure(OnFailure::Open);
    let ledger = redis.ledger();
    let open_ledger = redis.ledger().on_failure(OnFailure::Open);
    let account: Arc<str> = Arc::from("acct_down");
    ledger.top_up(&account, 1_000).await.unwrap();
    assert!(matches!(
        closed.check(&one_check("k")).await,
        Ok(Decision::Allowed(_))
    ));

    server.kill();
    // Fail closed: an error (the layer answers 503); fail open: allowed, with no state.
    for _ in 0..10 {
        assert!(closed.check(&one_check("k")).await.is_err());
        match open.check(&one_check("k")).await {
            Ok(Decision::Allowed(states)) => assert!(states.is_empty()),
            other => panic!("fail open admits, got {other:?}"),
        }
    }
    assert!(matches!(
        ledger.reserve(ReservationId::new(), &account, 10).await,
        Err(LedgerError::Unavailable(_))
    ));
    let unbacked = open_ledger
        .reserve(ReservationId::new(), &account, 10)
        .await
        .expect("fail open reserves nothing and admits");
    assert_eq!(unbacked.amount, 0);
    assert!(
        redis.failed_open() >= 11,
        "every unchecked admission is counted"
    );
    assert!(redis.breaker_open(), "the breaker opened");
    // With the breaker open, a call fails at once, without asking Redis.
    let started = Instant::now();
    let error = closed.check(&one_check("k")).await.unwrap_err();
    assert!(error.to_string().contains("breaker open"), "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "waited {:?}",
        started.elapsed()
    );

    server.restart().unwrap();
    let back = Instant::now();
    loop {
        if closed.check(&one_check("k")).await.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not recovered within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("recovered {:?} after Redis returned", back.elapsed());
    // The request admitted while Redis was down pays for what it used once it is back.
    let settled = open_ledger.settle(unbacked, 7).await.unwrap();
    assert_eq!((settled.charged, settled.balance), (7, 993));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_caps_fail_closed_or_open_and_count_what_ran_unchecked() {
    let mut server = RedisServer::start().unwrap();
    let redis = connect(server.url()).await;
    let closed = redis.cap_store();
    let open = redis.cap_store().on_failure(OnFailure::Open);
    let key: Arc<str> = Arc::from("key_down");
    let caps: Arc<[SpendCap]> = Arc::from([SpendCap::monthly(1_000).unwrap()]);
    let at = std::time::SystemTime::now();
    let before = closed
        .reserve(ReservationId::new(), &key, &caps, 100, at)
        .await
        .unwrap();
    closed.settle(before, 100).await.unwrap();

    server.kill();
    assert!(matches!(
        closed
            .reserve(ReservationId::new(), &key, &caps, 10, at)
            .await,
        Err(CapError::Unavailable(_))
    ));
    let unbacked = open
        .reserve(ReservationId::new(), &key, &caps, 10, at)
        .await
        .expect("fail open holds nothing and admits");
    assert_eq!(unbacked.amount, 0);
    assert!(
        redis.failed_open() >= 1,
        "the unchecked admission is counted"
    );

    server.restart().unwrap();
    let back = Instant::now();
    let spent = loop {
        if let Ok(usage) = closed.usage(&key, &caps, at).await {
            break usage[0].spent;
        }
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not recovered within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The request let through while Redis was down counts what it spent once it is back.
    let settled = open.settle(unbacked, 7).await.unwrap();
    assert_eq!(settled.charged, 7);
    let usage = closed.usage(&key, &caps, at).await.unwrap();
    assert_eq!((usage[0].spent, usage[0].reserved), (spent + 7, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replica_within_a_second() {
    let server = RedisServer::start().unwrap();
    let replicas = [
        connect(server.url()).await.key_store().await.unwrap(),
        connect(server.url()).await.key_store().await.unwrap(),
        connect(server.url()).await.key_store().await.unwrap(),
    ];
    let digest = KeyDigest::of("sk-test-alice");
    let principal = Principal::new("key_alice", "acct_alice")
        .with_allowed_models(["gpt-5.4"])
        .with_request_quota(Rate::per_minute(60).unwrap());
    // An unknown key is cached as unknown on every replica...
    for replica in &replicas {
        assert_eq!(replica.lookup(&digest).await.unwrap(), None);
    }
    // ...and a key created on one works on the others at once.
    replicas[0]
        .insert(&digest, &KeyRecord::new(principal.clone()))
        .await
        .unwrap();
    let created = Instant::now();
    for replica in &replicas[1..] {
        until(created, || async {
            replica.lookup(&digest).await.unwrap().is_some()
        })
        .await;
    }
    let record = replicas[2].lookup(&digest).await.unwrap().unwrap();
    assert_eq!(record.principal, principal, "the principal round-trips");
    let listed = replicas[1].records().await.unwrap();
    assert_eq!(
        listed,
        vec![(digest, KeyRecord::new(principal.clone()))],
        "the index lists it"
    );

    assert!(replicas[0].revoke(&digest).await.unwrap());
    let revoked = Instant::now();
    for replica in &replicas[1..] {
        until(revoked, || async {
            replica.lookup(&digest).await.unwrap().unwrap().revoked
        })
        .await;
    }
    println!("revocation seen everywhere after {:?}", revoked.elapsed());
    assert!(
        !replicas[1]
            .revoke(&KeyDigest::of("sk-never-issued"))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_cost_no_round_trip_and_survive_a_dead_redis_when_failing_open() {
    let mut server = RedisServer::start().unwrap();
    let redis = connect(server.url()).await;
    let keys = redis.key_store().await.unwrap();
    let open = keys
        .clone()
        .on_failure(OnFailure::Open)
        .cache_ttl(Duration::ZERO);
    let digest = KeyDigest::of("sk-test-bob");
    keys.insert(
        &digest,
        &KeyRecord::new(Principal::new("key_bob", "acct_bob")),
    )
    .await
    .unwrap();
    for _ in 0..100 {
        assert!(keys.lookup(&digest).await.unwrap().is_some());
    }
    let stats = server.cli(&["info", "commandstats"]).unwrap();
    assert!(
        stats.contains("cmdstat_hgetall:calls=1,"),
        "one round trip for 100 lookups: {stats}"
    );
    assert!(open.lookup(&digest).await.unwrap().is_some());
    server.kill();
    // Asking Redis every time: failing open answers from the stale cache, and refuses a key
    // it never saw.
    assert!(open.lookup(&digest).await.unwrap().is_some());
    assert!(open.lookup(&KeyDigest::of("sk-unknown")).await.is_err());
    assert!(
        keys.clone()
            .cache_ttl(Duration::ZERO)
            .lookup(&digest)
            .await
            .is_err(),
        "fail closed"
    );
}

/// Waits until `condition` holds, at most 1 s after `since`.
async fn until<F, Fut>(since: Instant, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    while !condition().await {
        assert!(since.elapsed() < Duration::from_secs(1), "not within 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
