//! BalanceGateLayer: reservations under concurrency, settlement from JSON and SSE usage (the
//! testkit upstream), release on upstream errors, the no-usage policy, top-ups, the sink, `n`
//! in the reservation, and the cap on an upstream that uses more than was reserved.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_balance::{
    BalanceGateLayer, InMemoryLedger, Ledger, NoUsagePolicy, ReservationId, UsageRecord, UsageSink,
    UsageSource,
};
use tollgate_core::{Body, ChatRequest, Endpoint, ModelInfo, Prices, Principal};
use tollgate_testkit::{Forward, MockUpstream, body_text, prompt_tokens};
use tower::{ServiceBuilder, ServiceExt};

mod support;
use support::decided;

/// $1 per million input tokens, $2 per million output tokens.
const PRICES: Prices = Prices::new(1_000_000, 2_000_000);

#[derive(Clone, Default)]
struct Records(Arc<Mutex<Vec<UsageRecord>>>);

impl UsageSink for Records {
    fn record(&self, record: UsageRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl Records {
    async fn wait(&self, count: usize) -> Vec<UsageRecord> {
        for _ in 0..300 {
            if self.0.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.0.lock().unwrap().clone()
    }
}

fn chat_request(body: Value) -> Request<Body> {
    let bytes = Bytes::from(body.to_string());
    let mut request = tollgate_testkit::chat_request(&body);
    request
        .headers_mut()
        .insert("x-request-id", "req_bal".parse().unwrap());
    let extensions = request.extensions_mut();
    extensions.insert(Principal::new("key_1", "acct_1"));
    extensions.insert(ModelInfo::new("gpt-5.4", 100_000, 1_000).prices(PRICES));
    extensions.insert(ChatRequest::parse(bytes).unwrap());
    // As the routing layer names it.
    extensions.insert(Endpoint::ChatCompletions);
    request
}

fn hello(stream: bool) -> Value {
    json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "Say hello to the ledger"}], "max_tokens": 100, "stream": stream, "stream_options": {"include_usage": stream}})
}

async fn ledger_with(amount: u64) -> Arc<InMemoryLedger> {
    let ledger = Arc::new(InMemoryLedger::new());
    ledger.top_up("acct_1", amount).await.unwrap();
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_never_overspend() {
    // Estimate: 13 prompt bytes (the bound) x $1/M + 100 completion x $2/M = 213 micro-units.
    let estimate = PRICES.cost(13, 100);
    let ledger = ledger_with(10 * estimate).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()))
        .service_fn({
            let gate = gate.clone();
            move |_request: Request<Body>| {
                let gate = gate.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    let body = json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}});
                    Ok::<_, Infallible>(Response::new(Body::from(body.to_string())))
                }
            }
        });
    let body = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "thirteen byte"}], "max_tokens": 100});
    let tasks: Vec<_> = (0..1_000)
        .map(|_| tokio::spawn(service.clone().oneshot(chat_request(body.clone()))))
        .collect();
    decided(&tasks, 990).await;
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        0,
        "all credit reserved, none more"
    );
    gate.add_permits(1_000);
    let mut admitted = 0;
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        if response.status() == 200 {
            admitted += 1;
            response.into_body().collect().await.unwrap();
        } else {
            assert_eq!(response.status(), 402);
        }
    }
    assert_eq!(admitted, 10);
    // Each settled at 5 x $1/M + 10 x $2/M = 25: the rest of every reservation came back.
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        10 * estimate - 10 * 25
    );
}

#[tokio::test]
async fn no_credit_and_too_little_credit_are_402s_and_a_top_up_works_at_once() {
    let upstream = MockUpstream::start().await;
    let ledger = Arc::new(InMemoryLedger::new());
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()))
        .service(Forward::to(&upstream.url()));
    let response = service
        .clone()
        .oneshot(chat_request(hello(false)))
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let estimate = PRICES.cost(23, 100);
    assert_eq!(
        body["error"],
        json!({"message": "Your prepaid credit has run out. Add credit to resume requests.", "type": "insufficient_balance", "param": null, "code": "insufficient_balance", "details": {"balance": 0, "required": estimate}})
    );

    ledger.top_up("acct_1", 100).await.unwrap();
    let response = service
        .clone()
        .oneshot(chat_request(hello(false)))
        .await
        .unwrap();
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["error"]["message"],
        "This request may cost up to 0.000223 and your balance is 0.0001. Add credit, or lower max_tokens so the request costs less."
    );
    assert_eq!(
        body["error"]["details"],
        json!({"balance": 100, "required": 223})
    );

    ledger.top_up("acct_1", 1_000).await.unwrap();
    let response = service.oneshot(chat_request(hello(false))).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the very next request after a top-up"
    );
}

#[tokio::test]
async fn a_json_response_settles_to_its_usage() {
    let upstream = MockUpstream::start().await;
    let ledger = ledger_with(1_000_000).await;
    let records = Records::default();
    let service = ServiceBuilder::new()
        .layer(
            BalanceGateLayer::with_shared_ledger(ledger.clone())
                .balance_header(true)
                .usage_sink(records.clone()),
        )
        .service(Forward::to(&upstream.url()));
    let response = service.oneshot(chat_request(hello(false))).await.unwrap();
    assert_eq!(
        response.headers()["x-tollgate-balance-unreserved"],
        (1_000_000 - PRICES.cost(23, 100)).to_string().as_str()
    );
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let (prompt, completion) = (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    let call = upstream.calls().pop().unwrap();
    assert_eq!(
        prompt,
        prompt_tokens(&ChatRequest::parse(call.body.clone()).unwrap())
    );
    let cost = PRICES.cost(prompt, completion);
    assert_eq!(ledger.balance("acct_1").await.unwrap(), 1_000_000 - cost);
    let records = records.wait(1).await;
    assert_eq!(records[0].cost, cost);
    assert_eq!((records[0].uncapped_cost, records[0].capped), (cost, false));
    assert_eq!(records[0].usage, UsageSource::Observed);
    assert_eq!(records[0].request_id.as_deref(), Some("req_bal"));
    assert_eq!(
        (
            &*records[0].key_id,
            &*records[0].account,
            &*records[0].model,
            records[0].status
        ),
        ("key_1", "acct_1", "gpt-5.4", 200)
    );
    assert_eq!(records[0].endpoint, Some("/v1/chat/completions"));
}

#[tokio::test]
async fn a_stream_settles_from_its_final_usage_chunk() {
    let upstream = MockUpstream::builder().chunks(12).start().await;
    let ledger = ledger_with(1_000_000).await;
    let records = Records::default();
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()).usage_sink(records.clone()))
        .service(Forward::to(&upstream.url()));
    let response = service.oneshot(chat_request(hello(true))).await.unwrap();
    let text = body_text(response).await;
    assert!(text.ends_with("data: [DONE]\n\n"));
    let records = records.wait(1).await;
    assert_eq!(records[0].completion_tokens, 12);
    assert_eq!(records[0].usage, UsageSource::Observed);
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        1_000_000 - records[0].cost
    );
}

#[tokio::test]
async fn an_upstream_error_releases_the_reservation() {
    let upstream = MockUpstream::start().await;
    let ledger = ledger_with(1_000_000).await;
    let records = Records::default();
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()).usage_sink(records.clone()))
        .service(Forward::to(&upstream.url()));
    let mut request = chat_request(hello(false));
    request
        .headers_mut()
        .insert("x-mock", "status=500".parse().unwrap());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(ledger.balance("acct_1").await.unwrap(), 1_000_000);
    let records = records.wait(1).await;
    assert_eq!(
        (
            records[0].cost,
            records[0].capped,
            records[0].usage,
            records[0].status
        ),
        (0, false, UsageSource::None, 500)
    );
}

#[tokio::test]
async fn a_client_gone_mid_stream_is_charged_what_was_observed() {
    let upstream = MockUpstream::builder()
        .chunks(50)
        .chunk_delay(Duration::from_millis(10))
        .start()
        .await;
    let ledger = ledger_with(1_000_000).await;
    let records = Records::default();
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()).usage_sink(records.clone()))
        .service(Forward::to(&upstream.url()));
    let response = service.oneshot(chat_request(hello(true))).await.unwrap();
    let mut body = response.into_body();
    for _ in 0..4 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body); // the client hangs up after the role chunk and three words
    let records = records.wait(1).await;
    let record = &records[0];
    assert_eq!(record.usage, UsageSource::Estimated);
    // "Hello from the " is 15 bytes: 4 tokens at 4 bytes a token; the prompt is its bound.
    assert_eq!((record.prompt_tokens, record.completion_tokens), (23, 4));
    assert_eq!(record.cost, PRICES.cost(23, 4));
    assert!(
        record.cost <= PRICES.cost(23, 100),
        "never more than the reservation"
    );
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        1_000_000 - record.cost
    );
}

#[tokio::test]
async fn n_choices_reserve_n_times_the_completion_budget() {
    let upstream = MockUpstream::start().await;
    let ledger = ledger_with(1_000_000).await;
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()).balance_header(true))
        .service(Forward::to(&upstream.url()));
    let mut body = hello(false);
    body["n"] = json!(3);
    let response = service.oneshot(chat_request(body)).await.unwrap();
    assert_eq!(response.status(), 200);
    // 23 prompt bytes (the bound) and three completions of up to 100 tokens each.
    assert_eq!(
        response.headers()["x-tollgate-balance-unreserved"],
        (1_000_000 - PRICES.cost(23, 300)).to_string().as_str()
    );
}

/// An upstream that ignores `max_tokens`: it reports 1,000,000 completion tokens, in a JSON
/// body or an event stream, whatever was asked.
async fn greedy_upstream(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let usage =
        json!({"prompt_tokens": 23, "completion_tokens": 1_000_000, "total_tokens": 1_000_023});
    let stream = ChatRequest::parse(request.into_body().collect().await.unwrap().to_bytes())
        .unwrap()
        .stream();
    let response = if stream {
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": "length"}]});
        let last = json!({"choices": [], "usage": usage});
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(format!(
                "data: {chunk}\n\ndata: {last}\n\ndata: [DONE]\n\n"
            )))
    } else {
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "length"}], "usage": usage});
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
    };
    Ok(response.unwrap())
}

#[tokio::test]
async fn usage_beyond_the_reservation_is_capped_at_the_reservation_plus_the_balance() {
    let reservation = PRICES.cost(23, 100);
    for stream in [false, true] {
        let ledger = ledger_with(reservation + 50).await;
        let records = Records::default();
        let service = ServiceBuilder::new()
            .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()).usage_sink(records.clone()))
            .service_fn(greedy_upstream);
        let response = service.oneshot(chat_request(hello(stream))).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        let records = records.wait(1).await;
        let record = &records[0];
        assert_eq!(record.usage, UsageSource::Observed, "stream: {stream}");
        assert_eq!(
            (record.prompt_tokens, record.completion_tokens),
            (23, 1_000_000)
        );
        assert_eq!(record.uncapped_cost, PRICES.cost(23, 1_000_000));
        assert_eq!(
            (record.cost, record.capped),
            (reservation + 50, true),
            "everything the account held, nothing more (stream: {stream})"
        );
        assert_eq!(ledger.balance("acct_1").await.unwrap(), 0);
        // The ledger's own rule: an account at zero cannot go below it.
        let account = Arc::from("acct_1");
        assert!(
            ledger
                .reserve(ReservationId::new(), &account, 1)
                .await
                .is_err()
        );
    }
}

/// How the invariant test's upstream answers.
enum Upstream {
    /// The mock, with this `x-mock` behaviour if any.
    Mock(Option<&'static str>),
    /// [`greedy_upstream`].
    Greedy,
}

#[tokio::test]
async fn the_record_cost_is_what_the_ledger_took_on_every_path() {
    let mut no_usage = hello(true);
    no_usage["stream_options"]["include_usage"] = json!(false);
    let cases = [
        (
            "usage within the budget",
            hello(false),
            Upstream::Mock(None),
            NoUsagePolicy::ChargeObserved,
        ),
        (
            "usage within the budget, streamed",
            hello(true),
            Upstream::Mock(None),
            NoUsagePolicy::ChargeObserved,
        ),
        (
            "an upstream error",
            hello(false),
            Upstream::Mock(Some("status=500")),
            NoUsagePolicy::ChargeObserved,
        ),
        (
            "a stream cut mid-body",
            hello(true),
            Upstream::Mock(Some("abort-after=2")),
            NoUsagePolicy::ChargeObserved,
        ),
        (
            "no usage, charge observed",
            no_usage.clone(),
            Upstream::Mock(None),
            NoUsagePolicy::ChargeObserved,
        ),
        (
            "no usage, keep the reservation",
            no_usage,
            Upstream::Mock(None),
            NoUsagePolicy::KeepReservation,
        ),
        (
            "usage beyond the reservation",
            hello(false),
            Upstream::Greedy,
            NoUsagePolicy::ChargeObserved,
        ),
        (
            "usage beyond the reservation, streamed",
            hello(true),
            Upstream::Greedy,
            NoUsagePolicy::ChargeObserved,
        ),
    ];
    for (case, body, upstream, policy) in cases {
        // Little more than the reservation, so that a greedy upstream meets the balance.
        let ledger = ledger_with(PRICES.cost(23, 100) + 50).await;
        let start = ledger.balance("acct_1").await.unwrap();
        let records = Records::default();
        let layer = BalanceGateLayer::with_shared_ledger(ledger.clone())
            .no_usage_policy(policy)
            .usage_sink(records.clone());
        let mut request = chat_request(body);
        let greedy = matches!(upstream, Upstream::Greedy);
        // A cut stream ends in an error: reading the body to its end is what matters here.
        match upstream {
            Upstream::Mock(behavior) => {
                let mock = MockUpstream::start().await;
                if let Some(behavior) = behavior {
                    request
                        .headers_mut()
                        .insert("x-mock", behavior.parse().unwrap());
                }
                let service = ServiceBuilder::new()
                    .layer(layer)
                    .service(Forward::to(&mock.url()));
                let response = service.oneshot(request).await.unwrap();
                let _ = response.into_body().collect().await;
            }
            Upstream::Greedy => {
                let service = ServiceBuilder::new()
                    .layer(layer)
                    .service_fn(greedy_upstream);
                let response = service.oneshot(request).await.unwrap();
                let _ = response.into_body().collect().await;
            }
        }
        let records = records.wait(1).await;
        let record = &records[0];
        let taken = start - ledger.balance("acct_1").await.unwrap();
        assert_eq!(record.cost, taken, "{case}: {record:?}");
        assert_eq!(record.capped, record.cost < record.uncapped_cost, "{case}");
        assert_eq!(
            record.capped, greedy,
            "only a greedy upstream is capped: {case}"
        );
    }
}

/// $1 per million input tokens, $0.10 per million of them read from the cache, $2 per million
/// output tokens.
const CACHED_PRICES: Prices = PRICES.with_cached_input(100_000);

#[tokio::test]
async fn cached_prompt_tokens_are_charged_at_the_cached_price_and_recorded() {
    for stream in [false, true] {
        let upstream = MockUpstream::start().await;
        let ledger = ledger_with(1_000_000).await;
        let records = Records::default();
        let service = ServiceBuilder::new()
            .layer(
                BalanceGateLayer::with_shared_ledger(ledger.clone())
                    .balance_header(true)
                    .usage_sink(records.clone()),
            )
            .service(Forward::to(&upstream.url()));
        let mut request = chat_request(hello(stream));
        request
            .extensions_mut()
            .insert(ModelInfo::new("gpt-5.4", 100_000, 1_000).prices(CACHED_PRICES));
        request.headers_mut().insert(
            "x-mock",
            "cached-tokens=5; reasoning-tokens=40".parse().unwrap(),
        );
        let response = service.oneshot(request).await.unwrap();
        // The reservation is the worst case: no prompt token from the cache.
        assert_eq!(
            response.headers()["x-tollgate-balance-unreserved"],
            (1_000_000 - CACHED_PRICES.cost(23, 100))
                .to_string()
                .as_str()
        );
        response.into_body().collect().await.unwrap();
        let records = records.wait(1).await;
        let record = &records[0];
        let prompt = prompt_tokens(
            &ChatRequest::parse(upstream.calls().pop().unwrap().body.clone()).unwrap(),
        );
        // The mock's reply is six words; the 40 reasoning tokens count in the completion.
        assert_eq!(
            (
                record.prompt_tokens,
                record.cached_tokens,
                record.completion_tokens,
                record.reasoning_tokens
            ),
            (prompt, 5, 46, 40),
            "stream: {stream}"
        );
        // (prompt - 5) x $1 + 5 x $0.10 + 46 x $2 per million, rounded up once.
        let expected =
            ((prompt - 5) * 1_000_000 + 5 * 100_000 + 46 * 2_000_000).div_ceil(1_000_000);
        assert!(
            expected < PRICES.cost(prompt, 46),
            "the cache makes a difference here"
        );
        assert_eq!((record.cost, record.uncapped_cost), (expected, expected));
        assert_eq!(
            ledger.balance("acct_1").await.unwrap(),
            1_000_000 - expected,
            "stream: {stream}"
        );
    }
}

/// Without the SSE layer the gate wraps a stream itself; a Responses API stream cut mid-way
/// still ends with the Responses API's error event, and is not charged.
#[tokio::test]
async fn a_responses_stream_cut_mid_way_ends_in_its_own_error_event_without_the_sse_layer() {
    let upstream = MockUpstream::start().await;
    let ledger = ledger_with(1_000_000).await;
    let records = Records::default();
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()).usage_sink(records.clone()))
        .service(Forward::to(&upstream.url()));
    let body =
        json!({"model": "gpt-5.4", "input": "Say hello", "stream": true, "max_output_tokens": 100});
    let mut request: Request<Body> = tollgate_testkit::post_json("/v1/responses", &body);
    request
        .headers_mut()
        .insert("x-mock", "abort-after=1".parse().unwrap());
    let extensions = request.extensions_mut();
    extensions.insert(Principal::new("key_1", "acct_1"));
    extensions.insert(ModelInfo::new("gpt-5.4", 100_000, 1_000).prices(PRICES));
    extensions.insert(ChatRequest::parse(Bytes::from(body.to_string())).unwrap());
    extensions.insert(Endpoint::Responses);
    let text = body_text(service.oneshot(request).await.unwrap()).await;
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let data = last.strip_prefix("event: error\ndata: ").expect(&text);
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        (&data["type"], &data["sequence_number"]),
        (&json!("error"), &json!(5))
    );
    let records = records.wait(1).await;
    assert_eq!((records[0].cost, records[0].usage), (0, UsageSource::None));
    assert_eq!(ledger.balance("acct_1").await.unwrap(), 1_000_000);
}
