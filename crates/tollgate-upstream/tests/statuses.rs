//! Upstream answers that are neither a success nor an ordinary error, against the testkit mock:
//! 1xx, 3xx, 2xx other than 200 and 201, a 404 that is not about the model, and Azure's 404
//! for a deployment it does not have.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderName, Request};
use serde_json::{Value, json};
use tollgate_balance::{BalanceGateLayer, InMemoryLedger, Ledger};
use tollgate_core::{Body, ChatRequest, ModelInfo, Prices, Principal};
use tollgate_testkit::{MockUpstream, TestServer, body_json};
use tollgate_upstream::{RetryPolicy, Upstream};
use tower::{ServiceBuilder, ServiceExt};

/// Retries on, and a fallback for every request: neither may run for these answers.
fn upstream(base: &str) -> Upstream {
    Upstream::builder(base)
        .unwrap()
        .api_key("sk-provider")
        .unwrap()
        .forward_header(HeaderName::from_static("x-mock"))
        .unwrap()
        .retry(RetryPolicy::default().with_max_retries(3))
        .build()
}

fn request(path: &str, mock: Option<&str>) -> Request<Body> {
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10});
    let mut request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    if let Some(mock) = mock {
        request
            .headers_mut()
            .insert("x-mock", mock.parse().unwrap());
    }
    let extensions = request.extensions_mut();
    extensions.insert(ChatRequest::parse(body.to_string().into()).unwrap());
    extensions.insert(ModelInfo::new("m", 1000, 100).prices(Prices::new(1_000_000, 1_000_000)));
    extensions.insert(tollgate_core::Fallbacks(
        [ModelInfo::new("m-backup", 1000, 100)].into(),
    ));
    extensions.insert(Principal::new("key_1", "acct_1"));
    request
}

#[tokio::test]
async fn an_answer_other_than_200_or_201_is_a_502_never_retried() {
    for status in [202u16, 203, 204, 205, 206, 301, 302, 303, 304, 307, 308] {
        let mock = MockUpstream::start().await;
        let response = upstream(&mock.url())
            .oneshot(request(
                "/v1/chat/completions",
                Some(&format!("status={status}")),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{status}");
        assert_eq!(response.headers()["x-should-retry"], "false", "{status}");
        let body = body_json(response).await;
        assert_eq!(body["error"]["type"], "provider_error", "{status}");
        assert_eq!(body["error"]["details"]["upstream_status"], status);
        assert_eq!(
            body["error"]["details"]["upstream_path"],
            "/v1/chat/completions"
        );
        assert_eq!(
            mock.calls().len(),
            1,
            "{status}: no retry, no fallback: the same request meets the same answer"
        );
    }
}

#[tokio::test]
async fn a_201_is_passed_on() {
    let mock = MockUpstream::start().await;
    let response = upstream(&mock.url())
        .oneshot(request("/v1/chat/completions", Some("status=201")))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_101_is_a_502() {
    let mock = MockUpstream::start().await;
    let response = upstream(&mock.url())
        .oneshot(request("/v1/chat/completions", Some("status=101")))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body = body_json(response).await;
    assert_eq!(body["error"]["details"]["upstream_status"], 101);
}

#[tokio::test]
async fn a_204_is_not_billed() {
    let mock = MockUpstream::start().await;
    let ledger = Arc::new(InMemoryLedger::new());
    ledger.top_up("acct_1", 1_000_000).await.unwrap();
    let gateway = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()))
        .service(upstream(&mock.url()));
    let response = gateway
        .clone()
        .oneshot(request("/v1/chat/completions", Some("status=204")))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let _: Value = body_json(response).await;
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        1_000_000,
        "the reservation came back whole"
    );
    let response = gateway
        .oneshot(request("/v1/chat/completions", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _: Value = body_json(response).await;
    assert!(
        ledger.balance("acct_1").await.unwrap() < 1_000_000,
        "a success is billed"
    );
}

#[tokio::test]
async fn an_upstream_404_is_model_not_found_only_when_the_provider_says_so() {
    let mock = MockUpstream::start().await;
    // The mock's injected 404 is OpenAI's answer to a model it does not serve.
    let response = upstream(&mock.url())
        .oneshot(request("/v1/chat/completions", Some("status=404")))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "model_not_found");
    assert_eq!(body["error"]["code"], "model_not_found");

    // A path the provider does not serve.
    let response = upstream(&mock.url())
        .oneshot(request("/v1/chat/complete", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "provider_error");
    assert_eq!(body["error"]["code"], Value::Null);
    assert_eq!(body["error"]["details"]["upstream_status"], 404);
    assert_eq!(
        body["error"]["details"]["upstream_path"],
        "/v1/chat/complete"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("/v1/chat/complete"), "{message}");
}

/// Azure OpenAI answers a model (a deployment) it does not have with its own code.
#[tokio::test]
async fn an_azure_deployment_not_found_is_model_not_found() {
    let azure = TestServer::start(tower::service_fn(|_request: Request<Body>| async {
        let body = json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}});
        let response = http::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        Ok::<_, Infallible>(response)
    }))
    .await;
    let response = upstream(&azure.url())
        .oneshot(request("/v1/chat/completions", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body = body_json(response).await;
    assert_eq!(body["error"]["type"], "model_not_found");
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["details"]["upstream_status"], 404);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The API deployment for this resource does not exist"),
        "{message}"
    );
}

#[tokio::test]
async fn a_base_url_under_a_wrong_prefix_names_the_upstream_path() {
    let mock = MockUpstream::start().await;
    let response = upstream(&format!("{}/openai", mock.url()))
        .oneshot(request("/v1/chat/completions", None))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body = body_json(response).await;
    assert_eq!(
        body["error"]["details"]["upstream_path"],
        "/openai/v1/chat/completions"
    );
    assert_eq!(mock.calls().len(), 1, "not retried, no fallback");
}
