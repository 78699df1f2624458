//! RateLimitLayer with governor on a fake clock: exact headers, Retry-After, token costs,
//! model isolation, all-or-nothing, streams, concurrency and bounded state.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::clock::FakeRelativeClock;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_core::{Body, ChatRequest, ModelInfo, Principal, PromptTokens, Rate};
use tollgate_ratelimit::{
    Check, Decision, GovernorBackend, Limits, RateLimitBackend, RateLimitLayer, RuleKey, Scope,
};
use tower::{Service, ServiceBuilder, ServiceExt};

type Backend = GovernorBackend<FakeRelativeClock>;

fn backend() -> (Backend, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    (GovernorBackend::with_clock(clock.clone()), clock)
}

async fn ok(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::from("ok")))
}

fn request(
    key: &str,
    model: Option<&str>,
    chat_json: Option<&'static str>,
    prompt: Option<u64>,
) -> Request<Body> {
    let mut request = Request::post("/v1/chat/completions")
        .body(Body::empty())
        .unwrap();
    let extensions = request.extensions_mut();
    extensions.insert(Principal::new(key.to_owned(), "acct"));
    if let Some(model) = model {
        extensions.insert(ModelInfo::new(model.to_owned(), 100_000, 1_000));
    }
    if let Some(json) = chat_json {
        extensions.insert(ChatRequest::parse(Bytes::from_static(json.as_bytes())).unwrap());
    }
    if let Some(prompt) = prompt {
        extensions.insert(PromptTokens::Exact(prompt));
    }
    request
}

fn headers(headers: &HeaderMap) -> [String; 3] {
    [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ]
    .map(|name| headers[name].to_str().unwrap().to_owned())
}

async fn json<B: http_body::Body<Error: std::fmt::Debug>>(response: Response<B>) -> Value {
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn three_per_minute_denies_the_fourth_for_20_seconds_with_exact_headers() {
    let (backend, clock) = backend();
    let layer = RateLimitLayer::with_backend(backend)
        .per_key(Limits::new().requests(Rate::per_minute(3).unwrap()));
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let mut send = async |model| {
        service
            .ready()
            .await
            .unwrap()
            .call(request("key_1", model, None, None))
            .await
            .unwrap()
    };

    for (remaining, reset) in [("2", "20"), ("1", "40"), ("0", "60")] {
        let response = send(Some("gpt-5.4")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            headers(response.headers()),
            ["3".to_owned(), remaining.to_owned(), reset.to_owned()]
        );
    }
    let denied = send(Some("gpt-5.4")).await;
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.headers()["retry-after"], "20");
    assert_eq!(denied.headers()["x-should-retry"], "true");
    assert_eq!(
        headers(denied.headers()),
        ["3", "0", "60"].map(String::from)
    );
    assert_eq!(
        json(denied).await["error"],
        serde_json::json!({
            "message": "Rate limit reached for gpt-5.4 on requests per min: Limit 3, Used 3, Requested 1. Please try again in 20s. This limit is set by the gateway.",
            "type": "rate_limit_exceeded", "param": null, "code": "rate_limit_exceeded",
            "details": {"scope": "key_requests", "limit": 3, "remaining": 0, "reset": 60}
        })
    );

    clock.advance(Duration::from_secs(19));
    let denied = send(None).await;
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.headers()["retry-after"], "1");
    assert!(
        json(denied).await["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit reached for your API key on requests per min")
    );

    clock.advance(Duration::from_secs(1));
    let response = send(None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        headers(response.headers()),
        ["3", "0", "60"].map(String::from)
    );
    assert_eq!(send(None).await.status(), 429);
}

#[tokio::test]
async fn a_retry_after_under_a_second_rounds_up_to_one() {
    let (backend, clock) = backend();
    let layer = RateLimitLayer::with_backend(backend)
        .per_key(Limits::new().requests(Rate::per_second(2).unwrap()));
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    for _ in 0..2 {
        service
            .ready()
            .await
            .unwrap()
            .call(request("k", None, None, None))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_millis(100));
    let denied = service
        .ready()
        .await
        .unwrap()
        .call(request("k", None, None, None))
        .await
        .unwrap();
    assert_eq!(denied.headers()["retry-after"], "1");
    assert!(
        json(denied).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Please try again in 400ms.")
    );
}

#[tokio::test]
async fn token_rules_charge_prompt_plus_completion_tokens() {
    let (backend, _clock) = backend();
    let layer = RateLimitLayer::with_backend(backend.clone())
        .per_key(Limits::new().tokens(Rate::per_minute(1_000).unwrap()));
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    // 100 prompt tokens + max_tokens 200 = 300 of 1,000.
    let chat = Some(r#"{"model":"gpt-5.4","messages":[],"max_tokens":200}"#);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request("k", Some("gpt-5.4"), chat, Some(100)))
        .await
        .unwrap();
    assert_eq!(
        headers(response.headers()),
        ["1000", "700", "18"].map(String::from)
    );
    // 100 + 650 = 750 > 700 left.
    let chat = Some(r#"{"model":"gpt-5.4","messages":[],"max_completion_tokens":650}"#);
    let denied = service
        .ready()
        .await
        .unwrap()
        .call(request("k", Some("gpt-5.4"), chat, Some(100)))
        .await
        .unwrap();
    assert_eq!(denied.status(), 429);
    let body = json(denied).await;
    assert_eq!(body["error"]["details"]["scope"], "key_tokens");
    assert_eq!(body["error"]["details"]["remaining"], 700);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on tokens per min: Limit 1000, Used 300, Requested 750."),
        "{body}"
    );
}

#[tokio::test]
async fn a_request_that_can_never_fit_is_told_so_and_not_to_retry() {
    let (backend, _clock) = backend();
    let layer = RateLimitLayer::with_backend(backend)
        .per_key(Limits::new().tokens(Rate::per_minute(1_000).unwrap()));
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    // No max_tokens: the model's max output (1,000) is the budget, and 1,010 > 1,000.
    let chat = Some(r#"{"model":"gpt-5.4","messages":[]}"#);
    let denied = service
        .ready()
        .await
        .unwrap()
        .call(request("k", Some("gpt-5.4"), chat, Some(10)))
        .await
        .unwrap();
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.headers()["x-should-retry"], "false");
    assert!(denied.headers().get("retry-after").is_none());
    assert_eq!(
        json(denied).await["error"]["message"],
        "This request needs 1010 tokens, more than the gateway's limit of 1000 tokens per min for gpt-5.4 allows at once, so it can never be accepted. Lower max_tokens or shorten the messages."
    );
}

#[tokio::test]
async fn per_model_rules_isolate_models() {
    let (backend, _clock) = backend();
    let layer = RateLimitLayer::with_backend(backend)
        .per_model(Limits::new().requests(Rate::per_minute(1).unwrap()))
        .model_limits("big", Limits::new().requests(Rate::per_minute(2).unwrap()));
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let mut status = async |key, model| {
        service
            .ready()
            .await
            .unwrap()
            .call(request(key, Some(model), None, None))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("a", "small").await, 200);
    assert_eq!(
        status("b", "small").await,
        429,
        "a per-model rule counts every caller"
    );
    assert_eq!(
        status("a", "other").await,
        200,
        "another model has its own budget"
    );
    assert_eq!(status("a", "big").await, 200);
    assert_eq!(status("b", "big").await, 200, "a model's own override");
    assert_eq!(status("c", "big").await, 429);
}

#[tokio::test]
async fn a_principal_quota_overrides_the_default_and_key_model_rules_apply() {
    let (backend, _clock) = backend();
    let layer = RateLimitLayer::with_backend(backend)
        .per_key(Limits::new().requests(Rate::per_minute(1).unwrap()))
        .per_key_model(Limits::new().requests(Rate::per_minute(2).unwrap()));
    let mut service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let vip = || {
        let mut request = request("vip", Some("m"), None, None);
        request.extensions_mut().insert(
            Principal::new("vip", "acct").with_request_quota(Rate::per_minute(10).unwrap()),
        );
        request
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            service
                .ready()
                .await
                .unwrap()
                .call(vip())
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "10/min for the key, but 2/min for key x model"
    );
}

#[tokio::test]
async fn a_denied_check_charges_none_of_the_others() {
    let (backend, _clock) = backend();
    let requests = Check {
        key: RuleKey::new(Scope::KeyRequests, Some(Arc::from("k")), None),
        rate: Rate::per_minute(10).unwrap(),
        cost: 1,
    };
    let tokens = |cost| Check {
        key: RuleKey::new(Scope::KeyTokens, Some(Arc::from("k")), None),
        rate: Rate::per_minute(100).unwrap(),
        cost,
    };
    // Tokens deny: the request rule must not have been charged.
    for _ in 0..20 {
        let decision = backend
            .check(&[requests.clone(), tokens(101)])
            .await
            .unwrap();
        assert!(matches!(
            decision,
            tollgate_ratelimit::Decision::Denied {
                index: 1,
                retry_after: None,
                ..
            }
        ));
    }
    let decision = backend.check(&[requests.clone(), tokens(1)]).await.unwrap();
    let tollgate_ratelimit::Decision::Allowed(states) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(states[0].remaining, 9, "only this request counted");
    assert_eq!(states[1].remaining, 99);
}

#[tokio::test]
async fn a_stream_carries_the_headers_on_its_head() {
    let (backend, _clock) = backend();
    let layer = RateLimitLayer::with_backend(backend)
        .per_key(
            Limits::new()
                .requests(Rate::per_minute(60).unwrap())
                .tokens(Rate::per_minute(10_000).unwrap()),
        )
        .openai_headers(true)
        .ietf_headers(true);
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_request: Request<Body>| async {
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from("data: a\n\ndata: [DONE]\n\n"))
                .unwrap();
            Ok::<_, Infallible>(response)
        });
    let chat = Some(r#"{"model":"m","messages":[],"max_tokens":100,"stream":true}"#);
    let response = service
        .oneshot(request("k", Some("m"), chat, Some(20)))
        .await
        .unwrap();
    let h = response.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(headers(h), ["60", "59", "1"].map(String::from));
    assert_eq!(h["x-ratelimit-limit-requests"], "60");
    assert_eq!(h["x-ratelimit-remaining-requests"], "59");
    assert_eq!(h["x-ratelimit-reset-requests"], "1s");
    assert_eq!(h["x-ratelimit-limit-tokens"], "10000");
    assert_eq!(h["x-ratelimit-remaining-tokens"], "9880");
    assert_eq!(h["x-ratelimit-reset-tokens"], "720ms");
    assert_eq!(
        h["ratelimit-policy"],
        "\"key_requests\";q=60;w=60, \"key_tokens\";q=10000;w=60"
    );
    assert_eq!(h["ratelimit"], "\"key_requests\";r=59;t=1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "data: a\n\ndata: [DONE]\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_against_a_quota_of_50_admit_exactly_50() {
    let (backend, _clock) = backend();
    let layer = RateLimitLayer::with_backend(backend)
        .per_key(Limits::new().requests(Rate::per_minute(50).unwrap()));
    let service = ServiceBuilder::new().layer(layer).service_fn(ok);
    let tasks: Vec<_> = (0..1_000)
        .map(|_| tokio::spawn(service.clone().oneshot(request("shared", None, None, None))))
        .collect();
    let mut admitted = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 50);
}

#[tokio::test]
async fn state_stays_bounded_without_a_cleanup_loop() {
    let (backend, clock) = backend();
    let rate = Rate::per_second(10).unwrap();
    for round in 0..5u32 {
        for n in 0..10_000u32 {
            let key = RuleKey::new(
                Scope::KeyRequests,
                Some(Arc::from(format!("key-{round}-{n}"))),
                None,
            );
            backend
                .check(&[Check { key, rate, cost: 1 }])
                .await
                .unwrap();
        }
        // Every key is full again after its 100 ms.
        clock.advance(Duration::from_secs(1));
    }
    // 50,000 distinct keys went through; sweeps keep at most about two rounds' worth.
    assert!(backend.len() <= 20_000, "{} keys held", backend.len());
}

/// A quota larger than governor's 32-bit cells is still counted and reported in 64 bits: the
/// remaining tokens of a 1e11 limit used to read 4294967224.
#[tokio::test]
async fn quotas_beyond_32_bits_are_reported_in_full() {
    let backend = GovernorBackend::with_clock(FakeRelativeClock::default());
    let rate = Rate::per_minute(100_000_000_000).unwrap();
    let check = |cost| {
        vec![Check {
            key: RuleKey::new(Scope::KeyTokens, Some("key_big".into()), None),
            rate,
            cost,
        }]
    };
    let Decision::Allowed(states) = backend.check(&check(1_000)).await.unwrap() else {
        panic!("a small request fits");
    };
    assert_eq!(states[0].limit, 100_000_000_000);
    assert_eq!(states[0].remaining, 99_999_999_000);
    let Decision::Allowed(states) = backend.check(&check(5_000_000_000)).await.unwrap() else {
        panic!("more than u32::MAX tokens at once fit a 1e11 quota");
    };
    // Costs round up to whole cells of 24 tokens: 5e9 is 208,333,334 cells.
    assert_eq!(states[0].remaining, 94_999_998_984);
    assert!(matches!(
        backend.check(&check(100_000_000_000)).await.unwrap(),
        Decision::Denied { .. }
    ));
}
