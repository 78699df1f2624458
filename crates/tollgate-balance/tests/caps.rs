//! Spend caps through BalanceGateLayer: the 402 `budget_exceeded` envelope and its details, the
//! 429 variant with `Retry-After`, a request dearer than the cap, a month end under a
//! controlled clock, 1,000 concurrent requests against a cap for 10, the balance's refusal
//! first, releases on both sides, and a cap that holds against an upstream ignoring
//! `max_tokens`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_balance::{
    BalanceGateLayer, CapExceededStatus, CapStore, InMemoryCapStore, InMemoryLedger, Ledger,
    UsageRecord, UsageSink,
};
use tollgate_core::spend::from_unix_millis;
use tollgate_core::{Body, ChatRequest, Endpoint, ModelInfo, Prices, Principal, SpendCap};
use tower::{ServiceBuilder, ServiceExt};

mod support;
use support::decided;

/// $1 per million input tokens, $2 per million output tokens.
const PRICES: Prices = Prices::new(1_000_000, 2_000_000);

/// The worst case of every request here: 13 prompt bytes (the bound) and 100 completion tokens.
const ESTIMATE: u64 = 13 + 200;

/// What every request here really costs: 5 prompt and 10 completion tokens.
const ACTUAL: u64 = 5 + 20;

/// 2026-12-31T23:59:00Z, a minute before the year ends.
const NEW_YEARS_EVE: i64 = 1_798_761_540_000;

/// A clock the test sets.
#[derive(Clone)]
struct Clock(Arc<Mutex<SystemTime>>);

impl Clock {
    fn at(millis: i64) -> Self {
        Clock(Arc::new(Mutex::new(from_unix_millis(millis))))
    }

    fn set(&self, millis: i64) {
        *self.0.lock().unwrap() = from_unix_millis(millis);
    }

    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

#[derive(Clone, Default)]
struct Records(Arc<Mutex<Vec<UsageRecord>>>);

impl UsageSink for Records {
    fn record(&self, record: UsageRecord) {
        self.0.lock().unwrap().push(record);
    }
}

fn request(caps: &[SpendCap]) -> Request<Body> {
    let body = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "thirteen byte"}], "max_tokens": 100});
    let mut request = tollgate_testkit::chat_request(&body);
    let extensions = request.extensions_mut();
    extensions.insert(Principal::new("key_1", "acct_1").with_spend_caps(caps.iter().copied()));
    extensions.insert(ModelInfo::new("gpt-5.4", 100_000, 1_000).prices(PRICES));
    extensions.insert(ChatRequest::parse(Bytes::from(body.to_string())).unwrap());
    extensions.insert(Endpoint::ChatCompletions);
    request
}

/// An upstream that reports `completion_tokens`, whatever was asked.
fn upstream(
    completion_tokens: u64,
) -> impl Fn(Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> + Clone {
    move |_request| {
        let body = json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": completion_tokens, "total_tokens": 5 + completion_tokens}});
        std::future::ready(Ok(Response::new(Body::from(body.to_string()))))
    }
}

struct Gate {
    ledger: Arc<InMemoryLedger>,
    caps: Arc<InMemoryCapStore>,
    clock: Clock,
    layer: BalanceGateLayer<InMemoryLedger, InMemoryCapStore>,
}

async fn gate(balance: u64, clock_at: i64) -> Gate {
    let ledger = Arc::new(InMemoryLedger::new());
    ledger.top_up("acct_1", balance).await.unwrap();
    let caps = Arc::new(InMemoryCapStore::new());
    let clock = Clock::at(clock_at);
    let layer = BalanceGateLayer::with_shared_ledger(ledger.clone())
        .with_shared_spend_caps(caps.clone())
        .cap_clock({
            let clock = clock.clone();
            move || clock.now()
        });
    Gate {
        ledger,
        caps,
        clock,
        layer,
    }
}

async fn json_body<B>(response: Response<B>) -> Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn a_full_monthly_cap_is_a_402_budget_exceeded_until_the_month_ends() {
    let Gate {
        ledger,
        caps,
        clock,
        layer,
    } = gate(1_000_000, NEW_YEARS_EVE).await;
    let service = ServiceBuilder::new().layer(layer).service_fn(upstream(10));
    let monthly = [SpendCap::monthly(ESTIMATE).unwrap()];
    let response = service.clone().oneshot(request(&monthly)).await.unwrap();
    assert_eq!(response.status(), 200);
    json_body(response).await;

    let response = service.clone().oneshot(request(&monthly)).await.unwrap();
    assert_eq!(response.status(), 402);
    assert_eq!(response.headers()["x-should-retry"], "false");
    assert!(response.headers().get("retry-after").is_none());
    let body = json_body(response).await;
    assert_eq!(
        body["error"],
        json!({
            "message": "This request may cost up to 0.000213 and would exceed this API key's monthly spend cap of 0.000213 (0.000025 spent, 0 held by requests in progress). The cap resets at 2027-01-01T00:00:00Z.",
            "type": "insufficient_balance",
            "param": null,
            "code": "budget_exceeded",
            "details": {
                "period": "month",
                "cap": ESTIMATE,
                "spent": ACTUAL,
                "reserved": 0,
                "required": ESTIMATE,
                "resets_at": "2027-01-01T00:00:00Z"
            }
        })
    );
    // The refused request's balance reservation went back.
    assert_eq!(ledger.balance("acct_1").await.unwrap(), 1_000_000 - ACTUAL);

    // The last millisecond of December is still December; January starts afresh.
    clock.set(NEW_YEARS_EVE + 59_999);
    let response = service.clone().oneshot(request(&monthly)).await.unwrap();
    assert_eq!(response.status(), 402);
    clock.set(NEW_YEARS_EVE + 60_000);
    let response = service.clone().oneshot(request(&monthly)).await.unwrap();
    assert_eq!(response.status(), 200);
    json_body(response).await;
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        1_000_000 - 2 * ACTUAL
    );
    let january = caps.usage("key_1", &monthly, clock.now()).await.unwrap();
    assert_eq!((january[0].spent, january[0].reserved), (ACTUAL, 0));
}

#[tokio::test]
async fn the_operator_can_answer_429_with_retry_after_until_the_reset() {
    let Gate { layer, .. } = gate(1_000_000, NEW_YEARS_EVE).await;
    let service = ServiceBuilder::new()
        .layer(layer.cap_exceeded_status(CapExceededStatus::TooManyRequests))
        .service_fn(upstream(10));
    let daily = [SpendCap::daily(ESTIMATE + 10).unwrap()];
    let response = service.clone().oneshot(request(&daily)).await.unwrap();
    assert_eq!(response.status(), 200);
    json_body(response).await;
    let response = service.clone().oneshot(request(&daily)).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");
    assert_eq!(response.headers()["x-should-retry"], "true");
    let body = json_body(response).await;
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert_eq!(
        body["error"]["details"],
        json!({"period": "day", "cap": ESTIMATE + 10, "spent": ACTUAL, "reserved": 0, "required": ESTIMATE, "resets_at": "2027-01-01T00:00:00Z"})
    );
}

#[tokio::test]
async fn a_request_dearer_than_the_cap_is_told_not_to_retry() {
    let Gate { layer, .. } = gate(1_000_000, NEW_YEARS_EVE).await;
    let service = ServiceBuilder::new()
        .layer(layer.cap_exceeded_status(CapExceededStatus::TooManyRequests))
        .service_fn(upstream(10));
    let rolling = [SpendCap::rolling(100, Duration::from_secs(86_400)).unwrap()];
    let response = service.oneshot(request(&rolling)).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-should-retry"], "false");
    assert!(response.headers().get("retry-after").is_none());
    let body = json_body(response).await;
    assert_eq!(
        body["error"]["message"],
        "This request may cost up to 0.000213, more than this API key's rolling 1d spend cap of 0.0001. Lower max_tokens so the request costs less."
    );
    assert_eq!(body["error"]["details"]["period"], "rolling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_against_a_monthly_cap_for_ten_admit_ten() {
    let Gate {
        ledger,
        caps,
        clock,
        layer,
    } = gate(1_000_000_000, NEW_YEARS_EVE).await;
    let monthly = [SpendCap::monthly(10 * ESTIMATE).unwrap()];
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let service = ServiceBuilder::new().layer(layer).service_fn({
        let gate = gate.clone();
        move |request: Request<Body>| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                upstream(10)(request).await
            }
        }
    });
    let tasks: Vec<_> = (0..1_000)
        .map(|_| tokio::spawn(service.clone().oneshot(request(&monthly))))
        .collect();
    decided(&tasks, 990).await;
    let held = caps.usage("key_1", &monthly, clock.now()).await.unwrap();
    assert_eq!(held[0].reserved, 10 * ESTIMATE, "the cap is held, no more");
    gate.add_permits(1_000);
    let mut admitted = 0;
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        match response.status().as_u16() {
            200 => {
                admitted += 1;
                // Settled as the body ends.
                json_body(response).await;
            }
            402 => assert_eq!(
                json_body(response).await["error"]["code"],
                "budget_exceeded"
            ),
            other => panic!("status {other}"),
        }
    }
    assert_eq!(admitted, 10);
    let spent = caps.usage("key_1", &monthly, clock.now()).await.unwrap();
    assert_eq!((spent[0].spent, spent[0].reserved), (10 * ACTUAL, 0));
    // The 990 refused requests' balance reservations all went back.
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        1_000_000_000 - 10 * ACTUAL
    );
}

#[tokio::test]
async fn no_credit_is_answered_first_and_the_cap_hold_goes_back() {
    let Gate {
        caps, clock, layer, ..
    } = gate(0, NEW_YEARS_EVE).await;
    let service = ServiceBuilder::new().layer(layer).service_fn(upstream(10));
    let monthly = [SpendCap::monthly(1_000_000).unwrap()];
    let response = service.oneshot(request(&monthly)).await.unwrap();
    assert_eq!(response.status(), 402);
    assert_eq!(
        json_body(response).await["error"]["code"],
        "insufficient_balance"
    );
    let usage = caps.usage("key_1", &monthly, clock.now()).await.unwrap();
    assert_eq!((usage[0].spent, usage[0].reserved), (0, 0));
}

#[tokio::test]
async fn a_cap_holds_against_an_upstream_that_ignores_max_tokens() {
    let Gate {
        ledger,
        caps,
        clock,
        layer,
    } = gate(1_000_000, NEW_YEARS_EVE).await;
    let records = Records::default();
    let service = ServiceBuilder::new()
        .layer(layer.usage_sink(records.clone()))
        .service_fn(upstream(1_000_000));
    let monthly = [SpendCap::monthly(ESTIMATE + 50).unwrap()];
    let response = service.oneshot(request(&monthly)).await.unwrap();
    assert_eq!(response.status(), 200);
    json_body(response).await;
    let record = records.0.lock().unwrap().pop().unwrap();
    assert_eq!(
        (record.cost, record.uncapped_cost, record.capped),
        (ESTIMATE + 50, 5 + 2_000_000, true)
    );
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        1_000_000 - ESTIMATE - 50
    );
    let usage = caps.usage("key_1", &monthly, clock.now()).await.unwrap();
    assert_eq!(usage[0].spent, ESTIMATE + 50);
}

#[tokio::test]
async fn an_upstream_error_releases_the_caps_too() {
    let Gate {
        ledger,
        caps,
        clock,
        layer,
    } = gate(1_000_000, NEW_YEARS_EVE).await;
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_request: Request<Body>| async {
            let mut response = Response::new(Body::from("{}"));
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            Ok::<_, Infallible>(response)
        });
    let caps_list = [
        SpendCap::daily(1_000).unwrap(),
        SpendCap::weekly(10_000).unwrap(),
    ];
    let response = service.oneshot(request(&caps_list)).await.unwrap();
    assert_eq!(response.status(), 502);
    let usage = caps.usage("key_1", &caps_list, clock.now()).await.unwrap();
    assert_eq!(
        usage
            .iter()
            .map(|usage| (usage.spent, usage.reserved))
            .collect::<Vec<_>>(),
        [(0, 0), (0, 0)]
    );
    assert_eq!(ledger.balance("acct_1").await.unwrap(), 1_000_000);
}
