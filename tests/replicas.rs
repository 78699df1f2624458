//! Gateway replicas sharing one Redis: three stacks of the example gateway, each its own hyper
//! server, against a `redis-server` (or a three-master cluster) started by the test.
//!
//! Limits and balances hold across the replicas, a revocation reaches all of them within a
//! second, a restart keeps every balance, a dead Redis fails closed or open as configured and
//! is used again within a second of returning, and the reservations of a crashed replica flow
//! back when they expire.

#[allow(dead_code)]
#[path = "../examples/gateway/backends.rs"]
mod backends;
#[allow(dead_code)]
#[path = "../examples/gateway/config.rs"]
mod config;
#[allow(dead_code)]
#[path = "../examples/gateway/stack.rs"]
mod stack;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate::auth::KeyDigest;
use tollgate::balance::Ledger;
use tollgate_testkit::redis::{RedisCluster, RedisServer};
use tollgate_testkit::{MockUpstream, TestServer};

const DEMO: &str = "sk-llmaai-demo-0123456789abcdef0123456789abcdef";
const BROKE: &str = "sk-llmaai-broke-0123456789abcdef0123456789abcd";

/// One gateway replica.
struct Replica {
    server: TestServer,
    handles: Arc<stack::Handles>,
}

/// Where the replicas' Redis is.
enum Target<'a> {
    Node(&'a RedisServer),
    Cluster(&'a RedisCluster),
}

/// The example's configuration on `target`, with `extra` lines in its `[redis]` section.
fn config(target: &Target, extra: &str) -> config::Config {
    let connection = match target {
        Target::Node(server) => format!("url = \"{}\"", server.url()),
        Target::Cluster(cluster) => format!("cluster = {:?}", cluster.urls()),
    };
    // Hundreds of requests at once in a debug build on a loaded 2-core machine can queue for
    // a second; production keeps the 50 ms default.
    let redis = format!("\n[redis]\n{connection}\ntimeout_ms = 5000\n{extra}\n");
    let mut config = config::Config::parse(&format!("{}{redis}", config::DEFAULT_CONFIG)).unwrap();
    config.upstream.max_retries = 0;
    config
}

async fn replicas(config: &config::Config, upstream: &MockUpstream, n: usize) -> Vec<Replica> {
    let mut replicas = Vec::with_capacity(n);
    for _ in 0..n {
        let (gateway, handles) = stack::build(config, &upstream.url(), Some("sk-provider"))
            .await
            .unwrap();
        let server = TestServer::start(gateway).await;
        let handles = Arc::new(handles);
        replicas.push(Replica { server, handles });
    }
    replicas
}

fn chat() -> Value {
    json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 100})
}

/// A chat completion with `key`: the status, the `Retry-After` header and the body.
async fn complete(addr: SocketAddr, key: &str) -> (u16, Option<String>, Value) {
    let request = Request::post("/v1/chat/completions")
        .header("host", "gateway")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat().to_string())))
        .unwrap();
    let response = tollgate_testkit::send(addr, request).await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, serde_json::from_slice(&body).unwrap())
}

/// `n` requests at once, spread over the replicas in turn.
async fn spread(replicas: &[Replica], n: usize) -> Vec<(u16, Option<String>, Value)> {
    let calls = (0..n).map(|i| complete(replicas[i % replicas.len()].server.addr(), DEMO));
    futures_util::future::join_all(calls).await
}

/// `n` requests at once, spread over the replicas in turn, with `upstream` holding every
/// response until each request is either refused or has reached it: no admitted request ends,
/// and so settles, before the last is decided, however slow the machine.
async fn spread_held(
    replicas: &[Replica],
    upstream: &MockUpstream,
    n: usize,
) -> Vec<(u16, Option<String>, Value)> {
    let reached_before = upstream.calls().len();
    let held = upstream.hold().await;
    let calls: Vec<_> = (0..n)
        .map(|i| tokio::spawn(complete(replicas[i % replicas.len()].server.addr(), DEMO)))
        .collect();
    let since = Instant::now();
    loop {
        let answered = calls.iter().filter(|call| call.is_finished()).count();
        let reached = upstream.calls().len() - reached_before;
        if answered + reached == n {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "{reached} reached the upstream and {answered} were answered, of {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
    let mut results = Vec::with_capacity(n);
    for call in calls {
        results.push(call.await.unwrap());
    }
    results
}

fn statuses(results: &[(u16, Option<String>, Value)], status: u16) -> usize {
    results.iter().filter(|(s, _, _)| *s == status).count()
}

/// The cost of a served request, from the usage it reports.
fn cost(replica: &Replica, body: &Value) -> u64 {
    let prices = replica
        .handles
        .catalog
        .current()
        .get("gpt-5.4")
        .unwrap()
        .info
        .prices;
    let usage = &body["usage"];
    prices.cost(
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    )
}

async fn a_limit_of_l_admits_exactly_l(target: Target<'_>) {
    const L: u64 = 50;
    let mut config = config(&target, "");
    config.limits.requests_per_minute = Some(L);
    let upstream = MockUpstream::start().await;
    let replicas = replicas(&config, &upstream, 3).await;
    let results = spread(&replicas, 300).await;
    assert_eq!(
        statuses(&results, 200),
        L as usize,
        "admitted across three replicas"
    );
    let others: Vec<_> = results
        .iter()
        .filter(|(status, _, _)| *status != 200 && *status != 429)
        .collect();
    assert!(
        others.is_empty(),
        "the rest are rate limited, not {others:?}"
    );
    assert_eq!(
        upstream.calls().len(),
        L as usize,
        "only admitted requests reach upstream"
    );
}

async fn a_balance_covering_ten_admits_at_most_ten(target: Target<'_>, redis_cli: &RedisServer) {
    let mut config = config(&target, "");
    // Only the balance refuses.
    config.limits.requests_per_minute = Some(1_000);
    let upstream = MockUpstream::start().await;
    let replicas = replicas(&config, &upstream, 3).await;
    // The worst case of one request, from a broke account's 402.
    let (status, _, refused) = complete(replicas[0].server.addr(), BROKE).await;
    assert_eq!(status, 402);
    let worst = refused["error"]["details"]["required"].as_u64().unwrap();
    // An operator sets the balance with redis-cli, as the README shows.
    let start = 10 * worst;
    let key = "tollgate:acct:{acct_demo}:balance";
    redis_cli
        .cli(&["-c", "set", key, &start.to_string()])
        .unwrap();

    let results = spread_held(&replicas, &upstream, 100).await;
    let served: Vec<_> = results.iter().filter(|(s, _, _)| *s == 200).collect();
    assert!(
        served.len() <= 10,
        "{} admitted on a balance for 10",
        served.len()
    );
    assert!(
        served.len() >= 5,
        "only {} admitted on a balance for 10",
        served.len()
    );
    assert_eq!(
        statuses(&results, 402),
        100 - served.len(),
        "the rest are refused"
    );
    let settled: u64 = served
        .iter()
        .map(|(_, _, body)| cost(&replicas[0], body))
        .sum();
    // Settlements finish as responses end: wait for the last.
    let ledger = &replicas[1].handles.ledger;
    balance_becomes(ledger, start - settled, Duration::from_secs(2)).await;
}

/// Waits until the demo account's balance is `expected`, at most `within`; how long it took.
async fn balance_becomes(ledger: &backends::Balances, expected: u64, within: Duration) -> Duration {
    let since = Instant::now();
    loop {
        let balance = ledger.balance("acct_demo").await.unwrap();
        if balance == expected {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "the balance is {balance}, never {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_admit_exactly_the_limit() {
    let redis = RedisServer::start().unwrap();
    a_limit_of_l_admits_exactly_l(Target::Node(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_cluster_admit_exactly_the_limit() {
    let cluster = RedisCluster::start(3).unwrap();
    a_limit_of_l_admits_exactly_l(Target::Cluster(&cluster)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_never_overspend() {
    let redis = RedisServer::start().unwrap();
    a_balance_covering_ten_admits_at_most_ten(Target::Node(&redis), &redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_cluster_never_overspend() {
    let cluster = RedisCluster::start(3).unwrap();
    a_balance_covering_ten_admits_at_most_ten(Target::Cluster(&cluster), &cluster.nodes()[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_replica_is_refused_by_the_others_within_a_second() {
    let redis = RedisServer::start().unwrap();
    let upstream = MockUpstream::start().await;
    let replicas = replicas(&config(&Target::Node(&redis), ""), &upstream, 3).await;
    for replica in &replicas {
        assert_eq!(complete(replica.server.addr(), DEMO).await.0, 200);
    }
    let backends::Keys::Redis(keys) = &replicas[0].handles.keys else {
        panic!("the [redis] section chose the Redis key store")
    };
    assert!(keys.revoke(&KeyDigest::of(DEMO)).await.unwrap());
    let revoked = Instant::now();
    for replica in &replicas[1..] {
        loop {
            let (status, _, body) = complete(replica.server.addr(), DEMO).await;
            if status == 401 {
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("revoked")
                );
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "still served after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!("revoked everywhere after {:?}", revoked.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_replica_keeps_every_balance() {
    let redis = RedisServer::start().unwrap();
    let config = config(&Target::Node(&redis), "");
    let upstream = MockUpstream::start().await;
    let first = replicas(&config, &upstream, 3).await;
    let opening = config
        .accounts
        .iter()
        .find(|a| a.id == "acct_demo")
        .unwrap()
        .balance;
    let results = spread(&first, 6).await;
    assert_eq!(statuses(&results, 200), 6);
    let spent: u64 = results
        .iter()
        .map(|(_, _, body)| cost(&first[0], body))
        .sum();
    balance_becomes(
        &first[0].handles.ledger,
        opening - spent,
        Duration::from_secs(2),
    )
    .await;
    drop(first);

    // The same configuration again: its opening balances do not reset what was spent.
    let second = replicas(&config, &upstream, 3).await;
    for replica in &second {
        let balance = replica.handles.ledger.balance("acct_demo").await.unwrap();
        assert_eq!(balance, opening - spent, "the balance survived the restart");
    }
    assert_eq!(complete(second[2].server.addr(), DEMO).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_closed_or_open_and_is_used_again_within_a_second() {
    let mut redis = RedisServer::start().unwrap();
    let upstream = MockUpstream::start().await;
    let mut closed_config = config(&Target::Node(&redis), "");
    let mut open_config = config(
        &Target::Node(&redis),
        "limits_on_failure = \"open\"\nbalance_on_failure = \"open\"\nkeys_on_failure = \"open\"",
    );
    // Only Redis's death refuses.
    for config in [&mut closed_config, &mut open_config] {
        config.limits.requests_per_minute = Some(1_000_000);
    }
    let closed = replicas(&closed_config, &upstream, 1).await;
    let open = replicas(&open_config, &upstream, 1).await;
    assert_eq!(complete(closed[0].server.addr(), DEMO).await.0, 200);
    assert_eq!(complete(open[0].server.addr(), DEMO).await.0, 200);

    // Load on both replicas while Redis dies under it.
    let stop = Arc::new(AtomicBool::new(false));
    let load = |addr: SocketAddr| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.push(complete(addr, DEMO).await);
            }
            seen
        })
    };
    let closed_loads: Vec<_> = (0..4).map(|_| load(closed[0].server.addr())).collect();
    let open_loads: Vec<_> = (0..4).map(|_| load(open[0].server.addr())).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for load in closed_loads {
        for (status, retry_after, body) in load.await.unwrap() {
            match status {
                200 => {}
                503 => {
                    assert_eq!(body["error"]["type"], "service_unavailable");
                    assert_eq!(retry_after.as_deref(), Some("1"));
                }
                other => panic!("{other} mid-load, failing closed: {body}"),
            }
        }
    }
    for load in open_loads {
        for (status, _, body) in load.await.unwrap() {
            assert_eq!(status, 200, "mid-load, failing open: {body}");
        }
    }
    // Redis down: fail closed refuses every request, fail open serves every one.
    for _ in 0..20 {
        let (status, retry_after, body) = complete(closed[0].server.addr(), DEMO).await;
        assert_eq!(status, 503, "fail closed: {body}");
        assert_eq!(body["error"]["type"], "service_unavailable");
        assert_eq!(retry_after.as_deref(), Some("1"));
        let (status, _, body) = complete(open[0].server.addr(), DEMO).await;
        assert_eq!(status, 200, "fail open: {body}");
    }

    redis.restart().unwrap();
    let back = Instant::now();
    loop {
        let (status, _, _) = complete(closed[0].server.addr(), DEMO).await;
        if status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not served within 1 s of Redis returning"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("served again {:?} after Redis returned", back.elapsed());
}

#[test]
fn a_crashed_replicas_reservations_flow_back_when_they_expire() {
    let redis = RedisServer::start().unwrap();
    let config = config(&Target::Node(&redis), "reservation_ttl_secs = 1");
    let test = tokio::runtime::Runtime::new().unwrap();
    // Streams that take seconds: the reservations are open when the replica dies.
    let upstream = test.block_on(
        MockUpstream::builder()
            .chunks(40)
            .chunk_delay(Duration::from_millis(100))
            .start(),
    );
    // The replica runs on a runtime of its own, so that it can die mid-request.
    let replica_runtime = tokio::runtime::Runtime::new().unwrap();
    let replica = replica_runtime.block_on(async {
        let mut replicas = replicas(&config, &upstream, 1).await;
        replicas.pop().unwrap()
    });
    let opening = test
        .block_on(replica.handles.ledger.balance("acct_demo"))
        .unwrap();
    let addr = replica.server.addr();
    let streams: Vec<_> = (0..3)
        .map(|_| {
            test.spawn(async move {
                let mut body = chat();
                body["stream"] = json!(true);
                let request = Request::post("/v1/chat/completions")
                    .header("host", "gateway")
                    .header("authorization", format!("Bearer {DEMO}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                let response = tollgate_testkit::send(addr, request).await.unwrap();
                assert_eq!(response.status(), 200);
                // Read until the connection dies with the replica.
                let mut body = response.into_body();
                while let Some(Ok(_)) = body.frame().await {}
            })
        })
        .collect();
    let survivor = test.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(2);
        while replica.handles.ledger.balance("acct_demo").await.unwrap() == opening {
            assert!(Instant::now() < deadline, "the streams never reserved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Another replica's view of the same Redis.
        replicas(&config, &upstream, 1).await.pop().unwrap()
    });
    // The crash: the replica's tasks stop where they are, nothing settles.
    replica_runtime.shutdown_background();
    drop(replica);
    test.block_on(async {
        for stream in streams {
            stream.await.unwrap();
        }
        let held = survivor.handles.ledger.balance("acct_demo").await.unwrap();
        assert!(
            held < opening,
            "the crashed replica's reservations are still held"
        );
        let crashed = Instant::now();
        balance_becomes(&survivor.handles.ledger, opening, Duration::from_secs(3)).await;
        println!(
            "whole again {:?} after the crash (time to live 1 s)",
            crashed.elapsed()
        );
    });
}

/// `method path` on the admin API with the demo admin key.
async fn admin_call(addr: SocketAddr, method: &str, path: &str, body: Value) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .header(
            "authorization",
            "Bearer adm-demo-0123456789abcdef0123456789abcdef",
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = tollgate_testkit::send(addr, request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Polls `complete(addr, key)` until it answers `status`, at most 1 s; how long it took.
async fn answers_within_a_second(addr: SocketAddr, key: &str, status: u16) -> Duration {
    let since = Instant::now();
    loop {
        let (got, _, body) = complete(addr, key).await;
        if got == status {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "still {got} after 1 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_money_managed_through_the_admin_api_hold_on_every_replica() {
    let redis = RedisServer::start().unwrap();
    let config = config(&Target::Node(&redis), "");
    let upstream = MockUpstream::start().await;
    let replicas = replicas(&config, &upstream, 3).await;
    let admin = stack::admin(&replicas[0].handles, &config, None)
        .unwrap()
        .unwrap();
    let admin = TestServer::start(admin).await;

    // A new key, issued through replica 0's admin API, works at once on every replica.
    let new = json!({"id": "key_new", "account": "acct_broke", "requests_per_minute": 100});
    let (status, created) = admin_call(admin.addr(), "POST", "/admin/keys", new).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    for replica in &replicas {
        let took = answers_within_a_second(replica.server.addr(), &key, 402).await;
        println!("a new key known after {took:?}");
    }

    // A top-up of the empty account: the very next request passes, on another replica.
    let top_up = json!({"amount": 5_000_000});
    let (status, _) = admin_call(
        admin.addr(),
        "POST",
        "/admin/accounts/acct_broke/top-up",
        top_up,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(complete(replicas[2].server.addr(), &key).await.0, 200);
    let (status, account) =
        admin_call(admin.addr(), "GET", "/admin/accounts/acct_broke", json!({})).await;
    assert_eq!(status, 200);
    assert!(
        account["balance"].as_u64().unwrap() < 5_000_000,
        "charged: {account}"
    );

    // Revoked through the admin API: refused everywhere within a second.
    let (status, _) = admin_call(
        admin.addr(),
        "POST",
        "/admin/keys/key_new/revoke",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    for replica in &replicas {
        let took = answers_within_a_second(replica.server.addr(), &key, 401).await;
        println!("revoked after {took:?}");
    }
    let (_, listed) = admin_call(admin.addr(), "GET", "/admin/keys", json!({})).await;
    let new = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "key_new")
        .unwrap();
    assert_eq!(new["revoked"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_cap_for_ten_admits_at_most_ten_of_a_thousand_across_replicas() {
    // One request's worst case, from a broke account's 402 on an in-memory stack.
    let upstream = MockUpstream::start().await;
    let plain = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    let probe = replicas(&plain, &upstream, 1).await;
    let (status, _, refused) = complete(probe[0].server.addr(), BROKE).await;
    assert_eq!(status, 402);
    let worst = refused["error"]["details"]["required"].as_u64().unwrap();

    let redis = RedisServer::start().unwrap();
    let mut config = config(&Target::Node(&redis), "");
    config.limits.requests_per_minute = Some(1_000_000);
    config.limits.model_requests_per_minute = Some(1_000_000);
    let demo = config
        .auth
        .keys
        .iter_mut()
        .find(|k| k.id == "key_demo")
        .unwrap();
    demo.spend_caps = Some(vec![format!("{}/month", 10 * worst)]);
    let replicas = replicas(&config, &upstream, 3).await;

    let results = spread_held(&replicas, &upstream, 1_000).await;
    let served = statuses(&results, 200);
    assert!(served <= 10, "{served} admitted on a monthly cap for 10");
    assert!(
        served >= 5,
        "only {served} admitted on a monthly cap for 10"
    );
    let (_, _, refusal) = results
        .iter()
        .find(|(status, _, _)| *status == 402)
        .unwrap();
    assert_eq!(refusal["error"]["code"], "budget_exceeded", "{refusal}");
    assert_eq!(refusal["error"]["details"]["period"], "month");
    assert_eq!(
        statuses(&results, 402),
        1_000 - served,
        "every other request is refused"
    );
    // What the admitted requests cost is what the month counts, on one Redis for all three.
    let cap = 10 * worst;
    let spent: u64 = results
        .iter()
        .filter(|(status, _, _)| *status == 200)
        .map(|(_, _, body)| cost(&replicas[0], body))
        .sum();
    assert!(spent <= cap, "{spent} spent on a cap of {cap}");
    let month = tollgate::core::SpendCap::monthly(cap)
        .unwrap()
        .period()
        .window(SystemTime::now())
        .unwrap();
    let counted = format!("tollgate:cap:{{k:key_demo}}:month:{month}");
    let since = Instant::now();
    while redis.cli(&["get", &counted]).unwrap().trim() != spent.to_string() {
        assert!(
            since.elapsed() < Duration::from_secs(2),
            "the month counts {}, not {spent}",
            redis.cli(&["get", &counted]).unwrap().trim()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{served} of 1,000 admitted on a monthly cap for 10 worst cases");
}
