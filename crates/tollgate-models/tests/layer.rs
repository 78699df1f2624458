//! ModelResolutionLayer through `oneshot`: every outcome with its exact status, type, message
//! and details.

use std::convert::Infallible;

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_core::{Body, ModelInfo, Principal};
use tollgate_models::{ModelCatalog, ModelResolutionLayer};
use tower::{ServiceBuilder, ServiceExt};

const CATALOG: &str = r#"
docs_url = "https://docs.example.com/gateway/models"

[[models]]
id = "gpt-5.4"
aliases = ["gpt-5", "latest"]
owned_by = "openai"
context_window = 400000
max_output_tokens = 128000
prices = { input = 2500000, output = 10000000 }
fallbacks = ["mimo/mimo-v2.5-pro", "gpt-4.1", "text-embedding-3-small"]

[[models]]
id = "google/gemini-3.1-flash-image"
context_window = 32000
max_output_tokens = 8192
endpoints = ["/v1/images/generations"]
hint = "For image-to-image, send reference images via the 'file_ids' field."
docs_url = "https://docs.example.com/gateway/image-generation/"

[[models]]
id = "mimo/mimo-v2.5-pro"
context_window = 128000
max_output_tokens = 8192

[[models]]
id = "mimo/mimo-v2-pro"
context_window = 128000
max_output_tokens = 8192
status = "retired"
retired_on = "2026-06-30"
replacement = "mimo/mimo-v2.5-pro"

[[models]]
id = "gpt-4.1"
context_window = 1000000
max_output_tokens = 32768
status = "deprecated"
deprecated_on = "2026-04-14"
sunset = "2026-12-31"
replacement = "gpt-5.4"

[[models]]
id = "text-embedding-3-small"
context_window = 8192
max_output_tokens = 1
endpoints = ["/v1/embeddings"]
"#;

/// Answers 200 with what reached it: the resolved model id and the body.
async fn echo(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let model = request
        .extensions()
        .get::<ModelInfo>()
        .map(|m| m.id.to_string());
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let echoed = json!({"model": model, "body": String::from_utf8_lossy(&body)});
    Ok(Response::new(Body::from(echoed.to_string())))
}

async fn send(request: Request<Body>) -> (u16, http::HeaderMap, Value) {
    let catalog = ModelCatalog::from_toml(CATALOG).unwrap();
    let service = ServiceBuilder::new()
        .layer(ModelResolutionLayer::new(catalog))
        .service_fn(echo);
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn chat(model: &str) -> Request<Body> {
    post(
        "/v1/chat/completions",
        &format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#),
    )
}

#[tokio::test]
async fn rejections_have_exact_status_type_message_and_details() {
    let cases: Vec<(&str, Request<Body>, u16, Value)> = vec![
        (
            "missing model",
            post("/v1/chat/completions", r#"{"messages":[]}"#),
            400,
            json!({"message": "You must provide a model parameter: the `model` field is missing.", "type": "invalid_request_error", "param": "model", "code": null}),
        ),
        (
            "empty model",
            chat(""),
            400,
            json!({"message": "You must provide a model parameter: the `model` field is empty.", "type": "invalid_request_error", "param": "model", "code": null}),
        ),
        (
            "model not a string",
            post("/v1/chat/completions", r#"{"model": 5, "messages":[]}"#),
            400,
            json!({"message": "`model` must be a string, but it is a number. Send the model's id, like \"gpt-5.4\".", "type": "invalid_request_error", "param": "model", "code": null}),
        ),
        (
            "wrong case",
            chat("GPT-5.4"),
            404,
            json!({"message": "The model \"GPT-5.4\" does not exist. Did you mean \"gpt-5.4\"? Model slugs are case-sensitive and lowercase.", "type": "model_not_found", "param": "model", "code": "model_not_found", "details": {"model": "GPT-5.4", "suggestion": "gpt-5.4"}}),
        ),
        (
            "typo",
            chat("gtp-5.4"),
            404,
            json!({"message": "The model \"gtp-5.4\" does not exist. Did you mean \"gpt-5.4\"?", "type": "model_not_found", "param": "model", "code": "model_not_found", "details": {"model": "gtp-5.4", "suggestion": "gpt-5.4"}}),
        ),
        (
            "missing provider",
            chat("gemini-3.1-flash-image"),
            404,
            json!({"message": "The model \"gemini-3.1-flash-image\" does not exist. Did you mean \"google/gemini-3.1-flash-image\"?", "type": "model_not_found", "param": "model", "code": "model_not_found", "details": {"model": "gemini-3.1-flash-image", "suggestion": "google/gemini-3.1-flash-image"}}),
        ),
        (
            "near an alias",
            chat("lates"),
            404,
            json!({"message": "The model \"lates\" does not exist. Did you mean \"latest\"?", "type": "model_not_found", "param": "model", "code": "model_not_found", "details": {"model": "lates", "suggestion": "latest"}}),
        ),
        (
            "unknown",
            chat("llama-9"),
            404,
            json!({"message": "The model \"llama-9\" does not exist. List the available models with GET /v1/models.", "type": "model_not_found", "param": "model", "code": "model_not_found", "details": {"model": "llama-9"}}),
        ),
        (
            "retired",
            chat("mimo/mimo-v2-pro"),
            410,
            json!({"message": "Model \"mimo/mimo-v2-pro\" was retired on 2026-06-30. Use \"mimo/mimo-v2.5-pro\" instead.", "type": "model_retired", "param": "model", "code": "model_retired", "details": {"model": "mimo/mimo-v2-pro", "replacement_model": "mimo/mimo-v2.5-pro", "retirement_date": "2026-06-30"}}),
        ),
        (
            "wrong endpoint",
            post(
                "/v1/images/edits",
                r#"{"model":"google/gemini-3.1-flash-image","prompt":"a cat"}"#,
            ),
            400,
            json!({
                "message": "The model \"google/gemini-3.1-flash-image\" does not support /v1/images/edits. Use /v1/images/generations instead. For image-to-image, send reference images via the 'file_ids' field.",
                "type": "unsupported_operation", "param": "model", "code": null,
                "details": {
                    "param": "model",
                    "model": "google/gemini-3.1-flash-image",
                    "attempted_endpoint": "/v1/images/edits",
                    "supported_endpoints": ["/v1/images/generations"],
                    "suggested_endpoint": "/v1/images/generations",
                    "hint": "For image-to-image, send reference images via the 'file_ids' field.",
                    "docs_url": "https://docs.example.com/gateway/image-generation/"
                }
            }),
        ),
        (
            "chat model on embeddings",
            post("/v1/embeddings", r#"{"model":"gpt-5.4","input":"x"}"#),
            400,
            json!({
                "message": "The model \"gpt-5.4\" does not support /v1/embeddings. Use /v1/chat/completions instead.",
                "type": "unsupported_operation", "param": "model", "code": null,
                "details": {
                    "param": "model", "model": "gpt-5.4", "attempted_endpoint": "/v1/embeddings",
                    "supported_endpoints": ["/v1/chat/completions"], "suggested_endpoint": "/v1/chat/completions",
                    "docs_url": "https://docs.example.com/gateway/models"
                }
            }),
        ),
        (
            "invalid json",
            post("/v1/chat/completions", r#"{"model": "gpt-5.4",}"#),
            400,
            json!({"message": "We could not parse the JSON body of your request: trailing comma at line 1, column 21. Check the JSON syntax (unclosed braces or strings, trailing commas, unquoted keys).", "type": "invalid_request_error", "param": null, "code": null, "details": {"line": 1, "column": 21}}),
        ),
    ];
    for (name, request, status, error) in cases {
        let (got_status, headers, body) = send(request).await;
        assert_eq!(got_status, status, "{name}: {body}");
        assert_eq!(body, json!({"error": error}), "{name}");
        assert!(headers.get("x-tollgate-model").is_none(), "{name}");
    }
}

#[tokio::test]
async fn request_fallbacks_are_checked_like_model_and_resolved() {
    let body = r#"{"model":"gpt-5.4","fallbacks":["mimo/mimo-v2.5-pro","gpt-5"],"messages":[]}"#;
    let catalog = ModelCatalog::from_toml(CATALOG).unwrap();
    let service = ServiceBuilder::new()
        .layer(ModelResolutionLayer::new(catalog))
        .service_fn(|request: Request<Body>| async move {
            let fallbacks = request
                .extensions()
                .get::<tollgate_core::Fallbacks>()
                .cloned()
                .unwrap_or_default();
            let ids: Vec<String> = fallbacks.0.iter().map(|m| m.id.to_string()).collect();
            Ok::<_, Infallible>(Response::new(Body::from(ids.join(","))))
        });
    let response = service
        .clone()
        .oneshot(post("/v1/chat/completions", body))
        .await
        .unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        text, "mimo/mimo-v2.5-pro,gpt-5.4",
        "aliases resolve, order kept"
    );

    for (fallbacks, status, param) in [
        (r#"["nope"]"#, 404, "fallbacks[0]"),
        (r#"["gpt-5.4", "mimo/mimo-v2-pro"]"#, 410, "fallbacks[1]"),
        (r#"["text-embedding-3-small"]"#, 400, "fallbacks[0]"),
        (r#"[7]"#, 400, "fallbacks[0]"),
        (r#""gpt-5.4""#, 400, "fallbacks"),
    ] {
        let body = format!(r#"{{"model":"gpt-5.4","fallbacks":{fallbacks},"messages":[]}}"#);
        let (got, _, json) = send(post("/v1/chat/completions", &body)).await;
        assert_eq!(got, status, "{fallbacks}: {json}");
        assert_eq!(json["error"]["param"], param, "{fallbacks}");
    }
}

#[tokio::test]
async fn the_catalogs_fallbacks_apply_when_the_request_names_none() {
    let catalog = ModelCatalog::from_toml(CATALOG).unwrap();
    let service = ServiceBuilder::new()
        .layer(ModelResolutionLayer::new(catalog))
        .service_fn(|request: Request<Body>| async move {
            let fallbacks = request
                .extensions()
                .get::<tollgate_core::Fallbacks>()
                .cloned()
                .unwrap_or_default();
            let ids: Vec<String> = fallbacks.0.iter().map(|m| m.id.to_string()).collect();
            Ok::<_, Infallible>(Response::new(Body::from(ids.join(","))))
        });
    let body = r#"{"model":"latest","messages":[]}"#;
    let response = service
        .clone()
        .oneshot(post("/v1/chat/completions", body))
        .await
        .unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "mimo/mimo-v2.5-pro,gpt-4.1",
        "in order, less the one that does not serve this endpoint"
    );

    let mut request = post("/v1/chat/completions", body);
    request
        .extensions_mut()
        .insert(Principal::new("k", "a").with_allowed_models(["gpt-5.4", "gpt-4.1"]));
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "gpt-4.1",
        "less those the key may not use"
    );
}

#[tokio::test]
async fn a_principal_without_access_gets_403() {
    let mut request = chat("gpt-5");
    request
        .extensions_mut()
        .insert(Principal::new("key_1", "acct_1").with_allowed_models(["mimo/mimo-v2.5-pro"]));
    let (status, _, body) = send(request).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"error": {"message": "Your API key may not use the model \"gpt-5.4\". Use one of the models GET /v1/models lists, or ask for access.", "type": "forbidden", "param": "model", "code": "model_not_allowed", "details": {"model": "gpt-5.4"}}})
    );

    let mut request = chat("mimo/mimo-v2.5-pro");
    request
        .extensions_mut()
        .insert(Principal::new("key_1", "acct_1").with_allowed_models(["mimo/mimo-v2.5-pro"]));
    assert_eq!(send(request).await.0, 200);
}

#[tokio::test]
async fn an_alias_is_rewritten_by_splicing_and_every_other_byte_is_unchanged() {
    let original = "{\n  \"messages\": [{\"role\": \"user\", \"content\": \"caf\\u00e9 \\\"quoted\\\"\"}],\n  \"model\" :  \"latest\" ,\n  \"temperature\": 0.70,\n  \"x\": [1.0e3, true]\n}";
    let (status, headers, echoed) = send(post("/v1/chat/completions", original)).await;
    assert_eq!(status, 200);
    assert_eq!(echoed["model"], "gpt-5.4");
    assert_eq!(
        echoed["body"],
        original.replace("\"latest\"", "\"gpt-5.4\"")
    );
    assert_eq!(headers["x-tollgate-model"], "gpt-5.4");
}

#[tokio::test]
async fn a_canonical_id_is_served_untouched_with_its_model_info() {
    let (status, headers, echoed) = send(chat("gpt-5.4")).await;
    assert_eq!(status, 200);
    assert_eq!(echoed["model"], "gpt-5.4");
    assert_eq!(
        echoed["body"],
        r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#
    );
    assert_eq!(headers["x-tollgate-model"], "gpt-5.4");
    assert!(headers.get("deprecation").is_none());
}

#[tokio::test]
async fn a_deprecated_model_is_served_with_deprecation_sunset_and_link() {
    let (status, headers, _) = send(chat("gpt-4.1")).await;
    assert_eq!(status, 200);
    // 2026-04-14T00:00:00Z
    assert_eq!(headers["deprecation"], "@1776124800");
    assert_eq!(headers["sunset"], "Thu, 31 Dec 2026 00:00:00 GMT");
    assert_eq!(
        headers["link"],
        "</v1/models/gpt-5.4>; rel=\"successor-version\", <https://docs.example.com/gateway/models>; rel=\"deprecation\""
    );
}

#[tokio::test]
async fn other_requests_pass_through_untouched() {
    for request in [
        Request::get("/v1/models").body(Body::empty()).unwrap(),
        Request::post("/v1/files")
            .body(Body::from("not json"))
            .unwrap(),
    ] {
        let (status, headers, echoed) = send(request).await;
        assert_eq!(status, 200);
        assert_eq!(echoed["model"], Value::Null);
        assert!(headers.get("x-tollgate-model").is_none());
    }
}

/// A multipart content type used to skip the catalog (its model would be a form field): a
/// JSON body sent under it then reached a retired model unchecked. Every declared type is now
/// read as JSON.
#[tokio::test]
async fn no_content_type_bypasses_the_catalog() {
    for content_type in [
        "multipart/form-data; boundary=x",
        "text/plain",
        "application/octet-stream",
    ] {
        let request = Request::post("/v1/chat/completions")
            .header("content-type", content_type)
            .body(Body::from(r#"{"model":"mimo/mimo-v2-pro","messages":[]}"#))
            .unwrap();
        assert_eq!(send(request).await.0, 410, "{content_type}");
    }
    let form = Request::post("/v1/chat/completions")
        .header("content-type", "multipart/form-data; boundary=x")
        .body(Body::from("--x--"))
        .unwrap();
    let (status, _, error) = send(form).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn a_wrong_content_type_does_not_bypass_the_catalog() {
    let request = Request::post("/v1/chat/completions")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(r#"{"model":"mimo/mimo-v2-pro","messages":[]}"#))
        .unwrap();
    assert_eq!(send(request).await.0, 410);
}

#[tokio::test]
async fn an_inner_model_header_wins() {
    let catalog = ModelCatalog::from_toml(CATALOG).unwrap();
    let service = ServiceBuilder::new()
        .layer(ModelResolutionLayer::new(catalog))
        .service_fn(|_request: Request<Body>| async {
            // As a fallback layer would: another model served the request.
            let mut response = Response::new(Body::empty());
            response
                .headers_mut()
                .insert("x-tollgate-model", "mimo/mimo-v2.5-pro".parse().unwrap());
            Ok::<_, Infallible>(response)
        });
    let response = service.oneshot(chat("gpt-5.4")).await.unwrap();
    assert_eq!(response.headers()["x-tollgate-model"], "mimo/mimo-v2.5-pro");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let catalog = ModelCatalog::from_toml(CATALOG).unwrap();
    let service = ServiceBuilder::new()
        .layer(
            ModelResolutionLayer::new(catalog)
                .body_limit(tollgate_core::BodyLimit::default().with_max_bytes(64)),
        )
        .service_fn(echo);
    let long = format!(
        r#"{{"model":"gpt-5.4","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(100)
    );
    let response = service
        .oneshot(post("/v1/chat/completions", &long))
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}
