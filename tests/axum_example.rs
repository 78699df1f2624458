//! The axum example, exercised over its router.

// The example's `main` serves on a fixed port; the test drives its router directly.
#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod example;

use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn send(request: Request<axum::body::Body>) -> (u16, String) {
    let response = example::app().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn chat(key: &str, body: &str) -> Request<axum::body::Body> {
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn the_layers_guard_an_axum_router() {
    let (status, body) = send(chat(
        example::KEY,
        r#"{"model":"parrot","messages":[{"role":"user","content":"hi"}]}"#,
    ))
    .await;
    assert_eq!((status, body.as_str()), (200, "key_axum: hi"));

    let (status, body) = send(chat("sk-llmaai-wrong", r#"{"model":"echo","messages":[]}"#)).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["type"],
        "auth_error"
    );

    let (status, body) = send(chat(
        example::KEY,
        r#"{"model":"Echo","messages":[{"role":"user","content":"hi"}]}"#,
    ))
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["details"]["suggestion"],
        "echo"
    );

    let (status, _) = send(chat(example::KEY, r#"{"model":"echo","messages":[]}"#)).await;
    assert_eq!(status, 400);

    let request = Request::get("/v1/models")
        .header("authorization", format!("Bearer {}", example::KEY))
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, body) = send(request).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["data"][0]["id"],
        "echo"
    );
}
