//! RequestGuardLayer on the Responses API, embeddings and legacy completions through `oneshot`:
//! each endpoint's rules with their exact status, param and message, its context window, and
//! the prompt tokens it leaves for the rate limiter and the balance gate.

use std::convert::Infallible;

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_core::{Body, Endpoint, ModelInfo, Paths, PromptTokens};
use tollgate_guard::{Encoding, RequestGuardLayer};
use tower::{ServiceBuilder, ServiceExt};

/// Answers 200 with the prompt tokens the guard recorded.
async fn echo(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let body = match request.extensions().get::<PromptTokens>().copied() {
        Some(PromptTokens::Exact(n)) => json!({"exact": n}),
        Some(PromptTokens::AtMost(n)) => json!({"at_most": n}),
        None => json!(null),
    };
    Ok(Response::new(Body::from(body.to_string())))
}

async fn send_with(layer: RequestGuardLayer, request: Request<Body>) -> (u16, Value) {
    let service = ServiceBuilder::new().layer(layer).service_fn(echo);
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn post(path: &str, body: impl Into<String>) -> Request<Body> {
    Request::post(path).body(Body::from(body.into())).unwrap()
}

fn with_model(mut request: Request<Body>, model: ModelInfo) -> Request<Body> {
    request.extensions_mut().insert(model);
    request
}

async fn send(request: Request<Body>) -> (u16, Value) {
    send_with(RequestGuardLayer::new(), request).await
}

/// Each case is a 400 `invalid_request_error` with this param, message and code.
async fn assert_rejected(path: &str, cases: &[(String, &str, &str, Option<&str>)]) {
    for (body, param, message, code) in cases {
        let (status, json) = send(post(path, body.clone())).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(json["error"]["param"], *param, "{body}");
        assert_eq!(json["error"]["message"], *message, "{body}");
        assert_eq!(
            json["error"]["code"],
            code.map_or(Value::Null, Value::from),
            "{body}"
        );
    }
}

async fn assert_admitted(path: &str, bodies: &[String]) {
    for body in bodies {
        let (status, json) = send(post(path, body.clone())).await;
        assert_eq!(status, 200, "{body}: {json}");
    }
}

const RESPONSES: &str = "/v1/responses";
const EMBEDDINGS: &str = "/v1/embeddings";
const COMPLETIONS: &str = "/v1/completions";

#[tokio::test]
async fn responses_rules_are_openais() {
    let with = |extra: &str| format!(r#"{{"model":"m","input":"Hi"{extra}}}"#);
    assert_rejected(
        RESPONSES,
        &[
            (
                r#"{"model":"m"}"#.into(),
                "input",
                "Missing required parameter: 'input'.",
                None,
            ),
            (
                r#"{"model":"m","input":{"role":"user"}}"#.into(),
                "input",
                "Invalid type for 'input': expected a string or an array of input items, but got an object instead.",
                None,
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":"x"},"y"]}"#.into(),
                "input[1]",
                "Invalid type for 'input[1]': expected an input item (an object), but got a string instead.",
                None,
            ),
            (
                r#"{"model":"m","input":[1,2]}"#.into(),
                "input[0]",
                "Invalid type for 'input[0]': expected an input item (an object), but got a number instead.",
                None,
            ),
            (
                with(r#","instructions":["x"]"#),
                "instructions",
                "Invalid type for 'instructions': expected a string, but got an array instead.",
                None,
            ),
            (
                with(r#","max_output_tokens":5"#),
                "max_output_tokens",
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 5 instead.",
                Some("integer_below_min_value"),
            ),
            (
                with(r#","max_output_tokens":-20"#),
                "max_output_tokens",
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got -20 instead.",
                Some("integer_below_min_value"),
            ),
            (
                with(r#","max_output_tokens":100.5"#),
                "max_output_tokens",
                "Invalid type for 'max_output_tokens': expected an integer, but got a decimal number instead.",
                Some("invalid_type"),
            ),
            (
                with(r#","max_output_tokens":"100""#),
                "max_output_tokens",
                "Invalid type for 'max_output_tokens': expected an integer, but got a string instead.",
                None,
            ),
            (
                with(r#","temperature":2.5"#),
                "temperature",
                "Invalid 'temperature': expected a value between 0 and 2, but got 2.5 instead.",
                None,
            ),
            (
                with(r#","top_p":1.5"#),
                "top_p",
                "Invalid 'top_p': expected a value between 0 and 1, but got 1.5 instead.",
                None,
            ),
            (
                with(r#","stream":1"#),
                "stream",
                "Invalid type for 'stream': expected a boolean, but got a number instead.",
                None,
            ),
        ],
    )
    .await;
    assert_admitted(
        RESPONSES,
        &[
            with(r#","max_output_tokens":16,"temperature":2,"top_p":0,"stream":true"#),
            with(r#","instructions":"Be brief.","max_output_tokens":null"#),
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"Hi"}]},{"type":"function_call_output","call_id":"c","output":"42"}]}"#.into(),
            r#"{"model":"m","input":""}"#.into(),
            // No chat rule applies: no `messages`, and `max_tokens`' rules are chat's.
            with(r#","max_tokens":0"#),
        ],
    )
    .await;
}

#[tokio::test]
async fn embeddings_rules_are_openais() {
    let with = |extra: &str| format!(r#"{{"model":"m","input":"Hi"{extra}}}"#);
    let input = |value: &str| format!(r#"{{"model":"m","input":{value}}}"#);
    let too_many = format!("[{}]", vec![r#""x""#; 2049].join(","));
    assert_rejected(
        EMBEDDINGS,
        &[
            (
                r#"{"model":"m"}"#.into(),
                "input",
                "Missing required parameter: 'input'.",
                None,
            ),
            (
                input("7"),
                "input",
                "Invalid type for 'input': expected a string, an array of strings, an array of token ids or an array of token-id arrays, but got a number instead.",
                None,
            ),
            (
                input(r#""""#),
                "input",
                "Invalid 'input': empty string. Expected a non-empty string, but got an empty string instead.",
                None,
            ),
            (
                input("[]"),
                "input",
                "Invalid 'input': empty array. Expected an array with at least one item, but got an empty array instead.",
                None,
            ),
            (
                input(r#"["a","b","c",""]"#),
                "input[3]",
                "Invalid 'input[3]': empty string. Expected a non-empty string, but got an empty string instead.",
                None,
            ),
            (
                input("[[1,2],[]]"),
                "input[1]",
                "Invalid 'input[1]': empty array. Expected at least one token id, but got an empty array instead.",
                None,
            ),
            (
                input(r#"["a",[1]]"#),
                "input[1]",
                "Invalid type for 'input[1]': expected a string, like the items before it, but got an array instead.",
                None,
            ),
            (
                input(r#"[[1],"a"]"#),
                "input[1]",
                "Invalid type for 'input[1]': expected an array of token ids, like the items before it, but got a string instead.",
                None,
            ),
            (
                input(r#"[1,2,"a"]"#),
                "input[2]",
                "Invalid type for 'input[2]': expected a token id, like the items before it, but got a string instead.",
                None,
            ),
            (
                input("[1,-2]"),
                "input[1]",
                "Invalid 'input[1]': a token id is a non-negative integer.",
                None,
            ),
            (
                input("[[1],[2.5]]"),
                "input[1]",
                "Invalid 'input[1]': an array of token ids holds only non-negative integers.",
                None,
            ),
            (
                input(r#"[{"text":"a"}]"#),
                "input[0]",
                "Invalid type for 'input[0]': expected a string, a token id or an array of token ids, but got an object instead.",
                None,
            ),
            (
                input(&too_many),
                "input",
                "Invalid 'input': array too long. Expected an array with maximum length 2048, but got an array with length 2049 instead.",
                Some("array_above_max_length"),
            ),
            (
                with(r#","dimensions":0"#),
                "dimensions",
                "Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but got 0 instead.",
                Some("integer_below_min_value"),
            ),
            (
                with(r#","dimensions":"256""#),
                "dimensions",
                "Invalid type for 'dimensions': expected an integer, but got a string instead.",
                None,
            ),
            (
                with(r#","encoding_format":"hex""#),
                "encoding_format",
                "Invalid value for 'encoding_format': 'hex'. Supported values are: 'float' and 'base64'.",
                None,
            ),
        ],
    )
    .await;
    let most = format!("[{}]", vec![r#""x""#; 2048].join(","));
    assert_admitted(
        EMBEDDINGS,
        &[
            input(r#""Hello""#),
            input(r#"["a","b"]"#),
            input("[1,2,3]"),
            input("[[1,2],[3]]"),
            input(&most),
            with(r#","dimensions":256,"encoding_format":"base64","user":"u""#),
            with(r#","encoding_format":"float","dimensions":null"#),
        ],
    )
    .await;
}

#[tokio::test]
async fn legacy_completions_rules_are_openais() {
    let with = |extra: &str| format!(r#"{{"model":"m","prompt":"Once"{extra}}}"#);
    let prompt = |value: &str| format!(r#"{{"model":"m","prompt":{value}}}"#);
    assert_rejected(
        COMPLETIONS,
        &[
            (
                r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#.into(),
                "prompt",
                "Missing required parameter: 'prompt'.",
                None,
            ),
            (
                prompt("true"),
                "prompt",
                "Invalid type for 'prompt': expected a string, an array of strings, an array of token ids or an array of token-id arrays, but got a boolean instead.",
                None,
            ),
            (
                prompt("[]"),
                "prompt",
                "Invalid 'prompt': empty array. Expected an array with at least one item, but got an empty array instead.",
                None,
            ),
            (
                prompt(r#"["a",null]"#),
                "prompt[1]",
                "Invalid type for 'prompt[1]': expected a string, like the items before it, but got null instead.",
                None,
            ),
            (
                with(r#","max_tokens":0"#),
                "max_tokens",
                "Invalid 'max_tokens': expected a positive integer, but got 0 instead.",
                None,
            ),
            (
                with(r#","n":129"#),
                "n",
                "Invalid 'n': expected an integer between 1 and 128, but got 129 instead.",
                None,
            ),
            (
                with(r#","best_of":21"#),
                "best_of",
                "Invalid 'best_of': expected an integer between 1 and 20, but got 21 instead.",
                None,
            ),
            (
                with(r#","n":3,"best_of":2"#),
                "best_of",
                "Invalid 'best_of': it must be at least 'n' (3), but got 2 instead.",
                None,
            ),
            (
                with(r#","temperature":-1"#),
                "temperature",
                "Invalid 'temperature': expected a value between 0 and 2, but got -1 instead.",
                None,
            ),
            (
                with(r#","frequency_penalty":2.5"#),
                "frequency_penalty",
                "Invalid 'frequency_penalty': expected a value between -2 and 2, but got 2.5 instead.",
                None,
            ),
            (
                with(r#","stream":"no""#),
                "stream",
                "Invalid type for 'stream': expected a boolean, but got a string instead.",
                None,
            ),
        ],
    )
    .await;
    assert_admitted(
        COMPLETIONS,
        &[
            prompt(r#""""#),
            prompt(r#"["a","b"]"#),
            prompt("[1,2]"),
            prompt("[[1],[2,3]]"),
            with(r#","max_tokens":5,"n":2,"best_of":4,"echo":true,"suffix":"end""#),
        ],
    )
    .await;
}

#[tokio::test]
async fn strict_mode_holds_each_endpoint_to_its_own_fields() {
    let strict = || RequestGuardLayer::new().strict(true);
    let cases = [
        (
            RESPONSES,
            r#"{"model":"m","input":"x","instructions":"y","previous_response_id":"r","store":false,"max_output_tokens":16,"fallbacks":["n"]}"#,
            r#"{"model":"m","input":"x","messages":[]}"#,
            "messages",
        ),
        (
            EMBEDDINGS,
            r#"{"model":"m","input":"x","dimensions":8,"encoding_format":"float","user":"u"}"#,
            r#"{"model":"m","input":"x","temperature":1}"#,
            "temperature",
        ),
        (
            COMPLETIONS,
            r#"{"model":"m","prompt":"x","max_tokens":5,"best_of":2,"echo":false,"seed":1}"#,
            r#"{"model":"m","prompt":"x","max_output_tokens":20}"#,
            "max_output_tokens",
        ),
    ];
    for (path, known, unknown, field) in cases {
        let (status, json) = send_with(strict(), post(path, known)).await;
        assert_eq!(status, 200, "{path} {known}: {json}");
        let (status, json) = send_with(strict(), post(path, unknown)).await;
        assert_eq!(status, 400, "{path} {unknown}");
        assert_eq!(json["error"]["param"], field);
        assert_eq!(
            json["error"]["message"],
            format!("Unrecognized request argument supplied: {field}")
        );
    }
}

#[tokio::test]
async fn the_routed_endpoint_picks_the_rules_and_the_path_stands_in_without_routing() {
    let embeddings = r#"{"model":"m","input":""}"#;
    // A path the operator guards, routed to embeddings: embeddings' rules.
    let layer = || RequestGuardLayer::new().paths(Paths::new(["/openai/embed"]));
    let mut routed = post("/openai/embed", embeddings);
    routed.extensions_mut().insert(Endpoint::Embeddings);
    let (status, json) = send_with(layer(), routed).await;
    assert_eq!((status, &json["error"]["param"]), (400, &json!("input")));
    // Not routed: the path decides, and a path that is no endpoint's gets chat's rules.
    let (status, json) = send_with(layer(), post("/openai/embed", embeddings)).await;
    assert_eq!((status, &json["error"]["param"]), (400, &json!("messages")));
    let (status, json) = send(post(EMBEDDINGS, embeddings)).await;
    assert_eq!((status, &json["error"]["param"]), (400, &json!("input")));
    // The routed endpoint wins over the path.
    let mut routed = post(EMBEDDINGS, r#"{"model":"m","prompt":"x"}"#);
    routed.extensions_mut().insert(Endpoint::Completions);
    let (status, _) = send(routed).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn every_metered_endpoint_is_guarded_by_default_and_paths_narrows_it() {
    for endpoint in Endpoint::ALL {
        let (status, _) = send(post(endpoint.path(), "not json")).await;
        assert_eq!(status, 400, "{}", endpoint.path());
    }
    let chat_only = RequestGuardLayer::new().paths(Paths::chat_completions());
    let (status, json) = send_with(chat_only, post(EMBEDDINGS, "not json")).await;
    assert_eq!((status, json), (200, Value::Null));
}

fn gpt(context_window: u64, max_output_tokens: u64) -> ModelInfo {
    ModelInfo::new("gpt-5.4", context_window, max_output_tokens)
}

#[tokio::test]
async fn a_responses_prompt_is_bounded_counted_and_held_to_the_window() {
    // 40 x "hello world " is 480 bytes but 81 tokens in o200k_base.
    let text = "hello world ".repeat(40);
    assert_eq!(Encoding::O200kBase.count(&text), 81);
    let body = |extra: &str| format!(r#"{{"model":"gpt-5.4","input":"{text}"{extra}}}"#);

    // The bytes decide: 3 (reply) + 482 bytes as written + 13 (a message's overhead).
    let request = post(RESPONSES, body(r#","max_output_tokens":100"#));
    let (status, json) = send(with_model(request, gpt(8_192, 1_024))).await;
    assert_eq!((status, json), (200, json!({"at_most": 498})));

    // Near the window, counted: 3 + (3 + 1 "user" + 81).
    let request = post(RESPONSES, body(r#","max_output_tokens":100"#));
    let (status, json) = send(with_model(request, gpt(300, 100))).await;
    assert_eq!((status, json), (200, json!({"exact": 88})));

    // Over it: 413 naming the input.
    let request = post(RESPONSES, body(r#","max_output_tokens":250"#));
    let (status, json) = send(with_model(request, gpt(300, 250))).await;
    assert_eq!(status, 413);
    assert_eq!(
        json["error"],
        json!({
            "message": "This model's maximum context length is 300 tokens. However, you requested 338 tokens (88 in the input, 250 in the output). Please reduce the length of the input or max_output_tokens.",
            "type": "request_too_large", "param": "input", "code": "context_length_exceeded",
            "details": {"context_window": 300, "prompt_tokens": 88, "completion_tokens": 250}
        })
    );

    // Without max_output_tokens the model's max output is the budget.
    let (status, _) = send(with_model(post(RESPONSES, body("")), gpt(150, 100))).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn responses_input_items_count_their_text_not_their_images() {
    let image = format!("data:image/png;base64,{}", "A".repeat(4_000));
    let body = json!({
        "model": "gpt-5.4",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": image}
        ]}],
        "max_output_tokens": 100
    });
    // 4 KB of image is past the byte bound of a 1,000-token window, but no text of the prompt.
    let request = post(RESPONSES, body.to_string());
    let (status, json) = send(with_model(request, gpt(1_000, 100))).await;
    assert_eq!(status, 200, "{json}");
    // 3 + (3 + 1 "developer" + 3 "Be brief.") + (3 + 1 "user" + 4 "What is this?")
    assert_eq!(json, json!({"exact": 18}));
}

#[tokio::test]
async fn a_continued_conversation_reserves_the_window_less_the_output() {
    for continued in [
        r#""previous_response_id":"resp_123""#,
        r#""conversation":"conv_123""#,
        r#""conversation":{"id":"conv_123"}"#,
        r#""prompt":{"id":"pmpt_123","version":"2"}"#,
    ] {
        let body = format!(
            r#"{{"model":"gpt-5.4","input":"And then?",{continued},"max_output_tokens":1000}}"#
        );
        let (status, json) = send(with_model(post(RESPONSES, body), gpt(8_192, 4_096))).await;
        assert_eq!(
            (status, json),
            (200, json!({"at_most": 7_192})),
            "{continued}"
        );
    }
    // The model's max output when the request sets none.
    let body = r#"{"model":"gpt-5.4","input":"And then?","previous_response_id":"resp_123"}"#;
    let (status, json) = send(with_model(post(RESPONSES, body), gpt(8_192, 4_096))).await;
    assert_eq!((status, json), (200, json!({"at_most": 4_096})));
    // A visible prompt over the window is still refused.
    let body = format!(
        r#"{{"model":"gpt-5.4","input":"{}","previous_response_id":"r","max_output_tokens":100}}"#,
        "hello world ".repeat(40)
    );
    let (status, _) = send(with_model(post(RESPONSES, body), gpt(150, 100))).await;
    assert_eq!(status, 413);
}

fn embedding_model() -> ModelInfo {
    ModelInfo::new("text-embedding-3-small", 100, 1)
}

#[tokio::test]
async fn each_embedding_input_must_fit_the_window_on_its_own() {
    let words = |n: usize| "hello world ".repeat(n);
    // 20 x "hello world " is 240 bytes but 41 tokens in cl100k_base.
    assert_eq!(Encoding::Cl100kBase.count(&words(20)), 41);
    // Inputs of 41, 41 and 1 tokens: 83 in all; of 41, 41 and 41, 123, over a 100-token
    // window: each input fits it on its own.
    let body = json!({"model": "text-embedding-3-small", "input": [words(20), words(20), "short"]});
    let request = post(EMBEDDINGS, body.to_string());
    let (status, json) = send(with_model(request, embedding_model())).await;
    assert_eq!(status, 200, "{json}");
    // Two counted (41 each), one bounded by its 5 bytes.
    assert_eq!(json, json!({"at_most": 87}));
    let body =
        json!({"model": "text-embedding-3-small", "input": [words(20), words(20), words(20)]});
    let request = post(EMBEDDINGS, body.to_string());
    let (status, json) = send(with_model(request, embedding_model())).await;
    assert_eq!((status, json), (200, json!({"exact": 123})));

    let body = json!({"model": "text-embedding-3-small", "input": ["short", words(20), words(60)]});
    let request = post(EMBEDDINGS, body.to_string());
    let (status, json) = send(with_model(request, embedding_model())).await;
    assert_eq!(status, 413);
    assert_eq!(
        json["error"],
        json!({
            "message": "This model's maximum context length is 100 tokens. However, 'input[2]' has 121 tokens. Please shorten it, or split it into several inputs.",
            "type": "request_too_large", "param": "input[2]", "code": "context_length_exceeded",
            "details": {"context_window": 100, "prompt_tokens": 121}
        })
    );

    // A single string is named `input`.
    let body = json!({"model": "text-embedding-3-small", "input": words(60)});
    let (status, json) = send(with_model(
        post(EMBEDDINGS, body.to_string()),
        embedding_model(),
    ))
    .await;
    assert_eq!((status, &json["error"]["param"]), (413, &json!("input")));
}

#[tokio::test]
async fn token_ids_count_exactly_without_the_tokenizer() {
    let ids = |n: usize| format!("[{}]", vec!["9"; n].join(","));
    let body = format!(r#"{{"model":"e","input":[{},{}]}}"#, ids(100), ids(3));
    let (status, json) = send(with_model(post(EMBEDDINGS, body), embedding_model())).await;
    assert_eq!((status, json), (200, json!({"exact": 103})));

    let body = format!(r#"{{"model":"e","input":[{},{}]}}"#, ids(3), ids(101));
    let (status, json) = send(with_model(post(EMBEDDINGS, body), embedding_model())).await;
    assert_eq!(status, 413);
    assert_eq!(json["error"]["param"], "input[1]");
    assert_eq!(json["error"]["details"]["prompt_tokens"], 101);

    // Without a window: exact all the same.
    let body = format!(r#"{{"model":"e","input":{}}}"#, ids(500));
    let (status, json) = send(post(EMBEDDINGS, body)).await;
    assert_eq!((status, json), (200, json!({"exact": 500})));
}

fn instruct(context_window: u64) -> ModelInfo {
    ModelInfo::new("gpt-3.5-turbo-instruct", context_window, 4_096)
}

#[tokio::test]
async fn each_legacy_prompt_and_its_max_tokens_must_fit_the_window() {
    // 41 tokens in cl100k_base, 240 bytes.
    let text = "hello world ".repeat(20);
    // Bounded: the 240 bytes and 16 default tokens fit 300.
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": text});
    let (status, json) = send(with_model(
        post(COMPLETIONS, body.to_string()),
        instruct(300),
    ))
    .await;
    assert_eq!((status, json), (200, json!({"at_most": 240})));
    // Counted: 240 + 16 > 100, 41 + 16 fits.
    let (status, json) = send(with_model(
        post(COMPLETIONS, body.to_string()),
        instruct(100),
    ))
    .await;
    assert_eq!((status, json), (200, json!({"exact": 41})));
    // The default of 16 is the budget: 41 + 16 > 50.
    let (status, json) = send(with_model(
        post(COMPLETIONS, body.to_string()),
        instruct(50),
    ))
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        json["error"],
        json!({
            "message": "This model's maximum context length is 50 tokens. However, you requested 57 tokens (41 in 'prompt', 16 in the completion). Please reduce the length of the prompt or completion.",
            "type": "request_too_large", "param": "prompt", "code": "context_length_exceeded",
            "details": {"context_window": 50, "prompt_tokens": 41, "completion_tokens": 16}
        })
    );
    // Each prompt of a batch on its own, with max_tokens: 41 + 59 fits 100, 41 + 60 does not.
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": [text, text], "max_tokens": 59});
    let (status, json) = send(with_model(
        post(COMPLETIONS, body.to_string()),
        instruct(100),
    ))
    .await;
    assert_eq!((status, json), (200, json!({"exact": 82})));
    let ids = vec![9; 41];
    let body =
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": [[1, 2, 3], ids], "max_tokens": 59});
    let (status, json) = send(with_model(
        post(COMPLETIONS, body.to_string()),
        instruct(100),
    ))
    .await;
    assert_eq!((status, json), (200, json!({"exact": 44})));
    let body =
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": [[1, 2, 3], ids], "max_tokens": 60});
    let (status, json) = send(with_model(
        post(COMPLETIONS, body.to_string()),
        instruct(100),
    ))
    .await;
    assert_eq!(
        (status, &json["error"]["param"]),
        (413, &json!("prompt[1]"))
    );
}
