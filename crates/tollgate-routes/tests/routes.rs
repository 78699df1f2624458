//! KnownRoutesLayer through `oneshot`: what passes reaches the inner service (with its
//! endpoint), everything else is a 404 or 405 envelope and never reaches it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_core::{Body, Endpoint};
use tollgate_routes::KnownRoutesLayer;
use tower::{ServiceBuilder, ServiceExt};

struct Answer {
    status: u16,
    allow: Option<String>,
    body: String,
}

async fn call(layer: KnownRoutesLayer, method: &str, path: &str) -> (Answer, usize) {
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |request: Request<Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let endpoint = request.extensions().get::<Endpoint>().copied();
            async move { Ok::<_, Infallible>(Response::new(Body::from(format!("{endpoint:?}")))) }
        });
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let allow = response
        .headers()
        .get("allow")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer = Answer {
        status,
        allow,
        body: String::from_utf8(body.to_vec()).unwrap(),
    };
    (answer, reached.load(Ordering::SeqCst))
}

#[tokio::test]
async fn each_metered_endpoint_passes_with_its_endpoint() {
    for endpoint in Endpoint::ALL {
        let (answer, reached) = call(KnownRoutesLayer::new(), "POST", endpoint.path()).await;
        assert_eq!((answer.status, reached), (200, 1), "{endpoint:?}");
        assert_eq!(answer.body, format!("Some({endpoint:?})"));
    }
}

#[tokio::test]
async fn the_model_listing_passes_for_get_and_head_only() {
    for path in [
        "/v1/models",
        "/v1/models/gpt-5.4",
        "/v1/models/openai/gpt-5.4",
    ] {
        for method in ["GET", "HEAD"] {
            let (answer, reached) = call(KnownRoutesLayer::new(), method, path).await;
            assert_eq!((answer.status, reached), (200, 1), "{method} {path}");
            assert_eq!(answer.body, "None", "not a metered endpoint");
        }
    }
    let (answer, reached) = call(KnownRoutesLayer::new(), "POST", "/v1/models").await;
    assert_eq!((answer.status, reached), (405, 0));
    assert_eq!(answer.allow.as_deref(), Some("GET, HEAD"));
}

#[tokio::test]
async fn a_wrong_method_on_an_endpoint_is_a_405_with_allow() {
    for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD"] {
        let (answer, reached) = call(KnownRoutesLayer::new(), method, "/v1/chat/completions").await;
        assert_eq!((answer.status, reached), (405, 0), "{method}");
        assert_eq!(answer.allow.as_deref(), Some("POST"));
        if method != "HEAD" {
            let json: Value = serde_json::from_str(&answer.body).unwrap();
            assert_eq!(json["error"]["type"], "method_not_allowed");
            assert_eq!(json["error"]["details"]["allowed_methods"][0], "POST");
        }
    }
}

#[tokio::test]
async fn unknown_paths_and_other_spellings_are_404s_that_never_reach_the_inner_service() {
    let probes = [
        ("POST", "/v1/batches"),
        ("DELETE", "/v1/files/file-abc"),
        ("GET", "/v1/organization/costs"),
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1//chat/completions"),
        ("POST", "//v1/chat/completions"),
        ("POST", "/v1/chat%2Fcompletions"),
        ("POST", "/v1/chat/./completions"),
        ("POST", "/v1/chat/completions/../completions"),
        ("POST", "/V1/chat/completions"),
        ("GET", "/v1/models/"),
        ("GET", "/v1/models//gpt-5.4"),
        ("GET", "/v1/modelsx"),
        ("GET", "/"),
    ];
    for (method, path) in probes {
        let (answer, reached) = call(KnownRoutesLayer::new(), method, path).await;
        assert_eq!((answer.status, reached), (404, 0), "{method} {path}");
        let json: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(json["error"]["type"], "unknown_route", "{method} {path}");
        assert_eq!(json["error"]["code"], "unknown_url");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(method) && message.contains(path),
            "{message}"
        );
    }
}

#[tokio::test]
async fn endpoints_not_served_are_unknown() {
    let layer = KnownRoutesLayer::new().endpoints([Endpoint::ChatCompletions]);
    let (answer, reached) = call(layer.clone(), "POST", "/v1/embeddings").await;
    assert_eq!((answer.status, reached), (404, 0));
    let (answer, reached) = call(layer, "POST", "/v1/chat/completions").await;
    assert_eq!((answer.status, reached), (200, 1));
}

#[tokio::test]
async fn a_listed_passthrough_passes_for_its_method_only() {
    let layer = KnownRoutesLayer::new().passthrough(Method::GET, "/v1/organization/usage");
    let (answer, reached) = call(layer.clone(), "GET", "/v1/organization/usage").await;
    assert_eq!(
        (answer.status, reached, answer.body.as_str()),
        (200, 1, "None")
    );
    let (answer, reached) = call(layer.clone(), "POST", "/v1/organization/usage").await;
    assert_eq!((answer.status, reached), (405, 0));
    assert_eq!(answer.allow.as_deref(), Some("GET"));
    let (answer, reached) = call(layer, "GET", "/v1/organization/usage/").await;
    assert_eq!((answer.status, reached), (404, 0));
}
