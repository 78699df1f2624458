//! `BalanceGateLayer` alone: a 402, a top-up, then a request settled from its usage.
//! `cargo run --example balance`

use std::sync::Arc;

use http::Request;
use http_body_util::BodyExt;
use tollgate::balance::{BalanceGateLayer, InMemoryLedger, Ledger};
use tollgate::core::{Body, ModelInfo, Prices, Principal};
use tollgate_testkit::{Forward, MockUpstream};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() {
    let upstream = MockUpstream::start().await;
    let ledger = Arc::new(InMemoryLedger::new());
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()))
        .service(Forward::to(&upstream.url()));
    let request = || {
        let body =
            r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"Hi"}],"max_tokens":50}"#;
        let mut request = Request::post("/v1/chat/completions")
            .body(Body::from(body))
            .unwrap();
        request
            .extensions_mut()
            .insert(Principal::new("key_1", "acct_1"));
        request.extensions_mut().insert(
            ModelInfo::new("gpt-5.4", 400_000, 128_000).prices(Prices::new(2_500_000, 10_000_000)),
        );
        request
    };
    let response = service.clone().oneshot(request()).await.unwrap();
    println!("before a top-up: {}", response.status());
    // The request may cost up to its prompt plus the model's whole max output (128,000 tokens
    // at $10 per million): $1.28, reserved before it runs, settled to its usage after.
    ledger.top_up("acct_1", 2_000_000).await.unwrap();
    let response = service.oneshot(request()).await.unwrap();
    println!("after a top-up: {}", response.status());
    response.into_body().collect().await.unwrap();
    println!(
        "balance after settlement: {} micro-units",
        ledger.balance("acct_1").await.unwrap()
    );
}
