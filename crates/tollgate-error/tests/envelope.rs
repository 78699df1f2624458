//! ErrorEnvelopeLayer through `oneshot` and under `axum::Router::layer`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_core::{Body, BoxError, ErrorKind, GatewayError};
use tollgate_error::{ErrorEnvelopeLayer, StatusCodeDialect, panic_response};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

async fn body_json<B>(response: Response<B>) -> Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn request_with_id(id: &str) -> Request<Body> {
    Request::builder()
        .uri("/v1/chat/completions")
        .header("x-request-id", id)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn gateway_errors_are_rerendered_with_the_request_id_and_keep_their_headers() {
    let service = ServiceBuilder::new()
        .layer(ErrorEnvelopeLayer::new())
        .service_fn(|_: Request<Body>| async {
            let mut response = GatewayError::new(ErrorKind::Auth, "Missing key.")
                .code("invalid_api_key")
                .into_response();
            response
                .headers_mut()
                .insert("www-authenticate", "Bearer".parse().unwrap());
            Ok::<_, Infallible>(response)
        });
    let response = service.oneshot(request_with_id("req_1")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(
        body_json(response).await,
        json!({"error": {"message": "Missing key.", "type": "auth_error", "param": null, "code": "invalid_api_key"}, "request_id": "req_1"})
    );
}

#[tokio::test]
async fn successful_responses_pass_through_untouched() {
    let service = ServiceBuilder::new()
        .layer(ErrorEnvelopeLayer::new())
        .service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("ok")))
        });
    let response = service.oneshot(request_with_id("r")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-type").is_none());
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
}

#[tokio::test]
async fn the_response_request_id_wins_over_the_request_header() {
    // tower-http's request-id layers sit inside the envelope: the id they generate is on the
    // response, not on the request the envelope saw.
    let service = ServiceBuilder::new()
        .layer(ErrorEnvelopeLayer::new())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(GatewayError::new(ErrorKind::Forbidden, "No.").into_response())
        });
    let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
    let header = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(header.len(), 36, "a uuid");
    assert_eq!(body_json(response).await["request_id"], header.as_str());
}

#[tokio::test]
async fn inner_errors_become_envelopes() {
    async fn answer(error: BoxError) -> (StatusCode, Value) {
        let mut slot = Some(error);
        let service = ServiceBuilder::new()
            .layer(ErrorEnvelopeLayer::new())
            .service(service_fn(move |_: Request<Body>| {
                let error = slot.take().expect("called once");
                async move { Err::<Response<Body>, BoxError>(error) }
            }));
        let response = service.oneshot(request_with_id("r")).await.unwrap();
        (response.status(), body_json(response).await)
    }

    let (status, body) = answer(Box::new(tower::timeout::error::Elapsed::new())).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["type"], "timeout");

    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused 10.0.0.1");
    let (status, body) = answer(Box::new(refused)).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["type"], "provider_unavailable");
    assert!(!body.to_string().contains("10.0.0.1"), "no detail leaks");

    let (status, body) = answer("database password is hunter2".into()).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"error": {"message": "The gateway had an error while processing your request. Retry after a short delay.", "type": "internal_error", "param": null, "code": null}, "request_id": "r"})
    );

    let (status, body) = answer(Box::new(
        GatewayError::new(ErrorKind::ServiceUnavailable, "Redis is down.")
            .retry_after(Duration::from_secs(2)),
    ))
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["type"], "service_unavailable");
}

#[tokio::test]
async fn a_service_that_fails_readiness_is_answered_with_an_envelope() {
    #[derive(Clone)]
    struct NeverReady;
    impl tower::Service<Request<Body>> for NeverReady {
        type Response = Response<Body>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response<Body>, BoxError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            std::task::Poll::Ready(Err(Box::new(tower::timeout::error::Elapsed::new())))
        }
        fn call(&mut self, _: Request<Body>) -> Self::Future {
            unreachable!("never called when not ready")
        }
    }
    let service = ServiceBuilder::new()
        .layer(ErrorEnvelopeLayer::new())
        .service(NeverReady);
    let response = service.oneshot(request_with_id("r")).await.unwrap();
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn another_dialect_renders_the_same_errors() {
    let service = ServiceBuilder::new()
        .layer(ErrorEnvelopeLayer::new().renderer(StatusCodeDialect))
        .service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(
                GatewayError::new(ErrorKind::Auth, "Unauthorized - Invalid or missing API key")
                    .into_response(),
            )
        });
    let response = service.oneshot(request_with_id("req_9")).await.unwrap();
    assert_eq!(
        body_json(response).await,
        json!({"error": {"code": 401, "message": "Unauthorized - Invalid or missing API key"}, "request_id": "req_9"})
    );
}

fn router() -> Router {
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "too late"
    }
    async fn boom() -> &'static str {
        panic!("the handler's private detail")
    }
    async fn denied() -> Response<tollgate_core::ResponseBody<Body>> {
        GatewayError::new(ErrorKind::Forbidden, "No access to this model.")
            .into_response()
            .map(Into::into)
    }
    Router::new()
        .route("/slow", post(slow))
        .route("/boom", post(boom))
        .route("/denied", post(denied))
        // One layer call, envelope outermost: the router needs no HandleErrorLayer, because the
        // envelope turns the timeout's `Elapsed` error into a response.
        .layer(
            ServiceBuilder::new()
                .layer(ErrorEnvelopeLayer::new())
                .layer(CatchPanicLayer::custom(panic_response))
                .timeout(Duration::from_millis(50)),
        )
}

async fn call_router(path: &str) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("x-request-id", "req_axum")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router().oneshot(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    (response.status(), body_json(response).await)
}

#[tokio::test]
async fn axum_router_timeout_gives_a_504_envelope() {
    let (status, body) = call_router("/slow").await;
    assert_eq!(status, 504);
    assert_eq!(
        body,
        json!({"error": {"message": "The request timed out. Request fewer tokens or try streaming.", "type": "timeout", "param": null, "code": null}, "request_id": "req_axum"})
    );
}

#[tokio::test]
async fn axum_router_panic_gives_a_500_envelope_without_the_detail() {
    let (status, body) = call_router("/boom").await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["type"], "internal_error");
    assert_eq!(body["request_id"], "req_axum");
    assert!(!body.to_string().contains("private detail"));
}

#[tokio::test]
async fn axum_router_unknown_route_gives_a_404_envelope() {
    let (status, body) = call_router("/v1/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["request_id"], "req_axum");
}

#[tokio::test]
async fn axum_handler_gateway_error_gets_the_request_id() {
    let (status, body) = call_router("/denied").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["message"], "No access to this model.");
    assert_eq!(body["request_id"], "req_axum");
}
