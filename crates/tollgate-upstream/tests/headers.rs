//! What reaches the provider of the client's headers, against the testkit mock: only what a
//! provider needs and what the operator allows or sets, never the client's credentials.

use http::header::{self, HeaderName};
use http::{HeaderMap, Request};
use serde_json::json;
use tollgate_core::Body;
use tollgate_testkit::{Call, MockUpstream};
use tollgate_upstream::{Upstream, UpstreamBuilder};
use tower::ServiceExt;

fn builder(mock: &MockUpstream) -> UpstreamBuilder {
    Upstream::builder(&mock.url())
        .unwrap()
        .api_key("sk-provider")
        .unwrap()
}

/// Sends a completion request with `headers` through `upstream`, and returns what the mock
/// received.
async fn send(mock: &MockUpstream, upstream: Upstream, headers: &[(&str, &str)]) -> Call {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let mut request = Request::post("/v1/chat/completions")
        .body(Body::from(body.to_string()))
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let response = upstream.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    mock.calls().pop().unwrap()
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect()
}

/// The client's credentials and account, and headers nobody allowed.
const FORBIDDEN: [(&str, &str); 10] = [
    ("authorization", "Bearer sk-client-secret"),
    ("api-key", "sk-client-secret"),
    ("x-api-key", "sk-client-secret"),
    ("proxy-authorization", "Basic c2stY2xpZW50LXNlY3JldA=="),
    ("cookie", "session=client-secret"),
    ("openai-organization", "org-client"),
    ("openai-project", "proj_client"),
    // Would make the mock fail the request, were it forwarded.
    ("x-mock", "status=500"),
    ("x-stainless-os", "Linux"),
    ("x-anything-else", "1"),
];

#[tokio::test]
async fn the_clients_credentials_and_headers_nobody_allowed_never_reach_the_provider() {
    let mock = MockUpstream::start().await;
    let call = send(&mock, builder(&mock).build(), &FORBIDDEN).await;
    for (name, _) in FORBIDDEN
        .iter()
        .filter(|(name, _)| *name != "authorization")
    {
        assert_eq!(call.header(name), None, "{name} was forwarded");
    }
    assert_eq!(
        values(&call.headers, "authorization"),
        ["Bearer sk-provider"],
        "the provider key, and only that"
    );
    for (name, value) in &call.headers {
        assert!(
            !value.to_str().unwrap().contains("client-secret"),
            "{name} carries the client's secret"
        );
    }
}

#[tokio::test]
async fn without_a_provider_key_the_clients_authorization_still_stays_behind() {
    let mock = MockUpstream::start().await;
    let upstream = Upstream::builder(&mock.url()).unwrap().build();
    let call = send(&mock, upstream, &FORBIDDEN).await;
    assert_eq!(call.header("authorization"), None);
}

#[tokio::test]
async fn the_headers_a_provider_needs_are_forwarded() {
    let mock = MockUpstream::start().await;
    let needed = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("user-agent", "OpenAI/Python 2.8.0"),
        ("openai-beta", "assistants=v2"),
        ("idempotency-key", "stainless-python-retry-6e2f"),
        ("x-request-id", "req_42"),
    ];
    let call = send(&mock, builder(&mock).build(), &needed).await;
    for (name, value) in needed {
        assert_eq!(values(&call.headers, name), [value], "{name}");
    }
}

#[tokio::test]
async fn the_provider_sees_its_own_host_never_the_clients() {
    let mock = MockUpstream::start().await;
    let call = send(
        &mock,
        builder(&mock).build(),
        &[("host", "gateway.example")],
    )
    .await;
    let authority = mock.url().trim_start_matches("http://").to_owned();
    assert_eq!(values(&call.headers, "host"), [authority.as_str()]);
}

#[tokio::test]
async fn a_header_the_operator_allows_is_forwarded_with_all_its_values() {
    let mock = MockUpstream::start().await;
    let upstream = builder(&mock)
        .forward_header(HeaderName::from_static("x-stainless-retry-count"))
        .unwrap()
        .build();
    let call = send(
        &mock,
        upstream,
        &[
            ("x-stainless-retry-count", "0"),
            ("x-stainless-retry-count", "1"),
            ("x-stainless-os", "Linux"),
        ],
    )
    .await;
    assert_eq!(values(&call.headers, "x-stainless-retry-count"), ["0", "1"]);
    assert_eq!(call.header("x-stainless-os"), None, "only the one allowed");
}

#[tokio::test]
async fn a_fixed_operator_header_replaces_the_clients() {
    let mock = MockUpstream::start().await;
    let upstream = builder(&mock)
        .header(
            HeaderName::from_static("openai-organization"),
            "org-gateway".parse().unwrap(),
        )
        .unwrap()
        .header(
            HeaderName::from_static("openai-project"),
            "proj_gateway".parse().unwrap(),
        )
        .unwrap()
        .build();
    let call = send(
        &mock,
        upstream,
        &[
            ("openai-organization", "org-client"),
            ("openai-organization", "org-other"),
        ],
    )
    .await;
    assert_eq!(
        values(&call.headers, "openai-organization"),
        ["org-gateway"]
    );
    assert_eq!(
        values(&call.headers, "openai-project"),
        ["proj_gateway"],
        "sent even when the client sent none"
    );
}

#[tokio::test]
async fn a_fixed_header_replaces_one_the_operator_also_forwards() {
    let mock = MockUpstream::start().await;
    let upstream = builder(&mock)
        .header(header::USER_AGENT, "tollgate".parse().unwrap())
        .unwrap()
        .build();
    let call = send(&mock, upstream, &[("user-agent", "OpenAI/Python 2.8.0")]).await;
    assert_eq!(values(&call.headers, "user-agent"), ["tollgate"]);
}

#[test]
fn the_builder_refuses_to_forward_credentials_or_set_the_clients_own_headers() {
    let builder = || Upstream::builder("http://127.0.0.1:9").unwrap();
    for name in [
        "authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "openai-organization",
        "openai-project",
        "host",
        "content-length",
        "accept-encoding",
        "connection",
        "transfer-encoding",
        "proxy-authorization",
    ] {
        let name = HeaderName::from_static(name);
        let error = builder().forward_header(name.clone()).unwrap_err();
        assert_eq!(error.name(), name);
        assert!(error.to_string().contains(name.as_str()), "{error}");
    }
    for name in [
        "authorization",
        "host",
        "content-length",
        "accept-encoding",
        "connection",
        "te",
    ] {
        let name = HeaderName::from_static(name);
        assert!(
            builder()
                .header(name.clone(), "x".parse().unwrap())
                .is_err(),
            "{name}"
        );
    }
    // A provider credential or account the gateway sends as its own is fine.
    assert!(
        builder()
            .header(
                HeaderName::from_static("api-key"),
                "sk-azure".parse().unwrap()
            )
            .is_ok()
    );
    assert!(
        builder()
            .forward_header(HeaderName::from_static("x-mock"))
            .is_ok()
    );
}

#[test]
fn a_fixed_header_stays_out_of_debug_output() {
    let builder = Upstream::builder("http://127.0.0.1:9")
        .unwrap()
        .header(
            HeaderName::from_static("api-key"),
            "sk-azure-secret".parse().unwrap(),
        )
        .unwrap();
    assert!(!format!("{builder:?}").contains("sk-azure-secret"));
    assert!(!format!("{:?}", builder.build()).contains("sk-azure-secret"));
}

/// The provider's answer names the organization and project it billed (the gateway
/// operator's) and may set cookies: the client sees none of them, nor the headers of the
/// provider's connection, and the gateway's request id stays the one it sees, the provider's
/// moving to `x-upstream-request-id`.
#[tokio::test]
async fn the_providers_account_headers_never_reach_the_client() {
    let provider =
        tollgate_testkit::TestServer::start(tower::service_fn(|_request: Request<Body>| async {
            let response = http::Response::builder()
                .header("content-type", "application/json")
                .header("openai-organization", "org-operator")
                .header("openai-project", "proj_operator")
                .header("set-cookie", "__cf_bm=secret")
                .header("x-request-id", "req_provider")
                .header("openai-processing-ms", "12")
                .header("connection", "keep-alive, x-hop")
                .header("keep-alive", "timeout=5")
                .header("x-hop", "for this connection")
                .body(Body::from(
                    r#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
                ))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }))
        .await;
    let upstream = Upstream::builder(&provider.url()).unwrap().build();
    let request = Request::post("/v1/chat/completions")
        .body(Body::from(r#"{"model":"gpt-5.4","messages":[]}"#))
        .unwrap();
    let response = upstream.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    for name in [
        "openai-organization",
        "openai-project",
        "set-cookie",
        "x-request-id",
        "connection",
        "keep-alive",
        "x-hop",
    ] {
        assert!(!headers.contains_key(name), "{name} reached the client");
    }
    assert_eq!(headers["x-upstream-request-id"], "req_provider");
    assert_eq!(headers["openai-processing-ms"], "12", "other headers pass");
}

#[tokio::test]
async fn the_provider_gets_the_length_of_the_body_it_is_sent_whatever_the_client_said() {
    let mock = MockUpstream::start().await;
    let body_len = send(&mock, builder(&mock).build(), &[]).await.body.len();
    let exact = body_len.to_string();
    for said in [exact.clone(), format!("0{exact}"), "7".to_owned()] {
        let call = send(&mock, builder(&mock).build(), &[("content-length", &said)]).await;
        assert_eq!(call.body.len(), body_len);
        assert_eq!(values(&call.headers, "content-length"), [&*exact], "{said}");
    }
}
