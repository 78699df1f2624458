//! Hostile input against the composed demo gateway (the stack of `examples/gateway`), over TCP,
//! with the testkit mock as a recording upstream.
//!
//! The table: every case is raw bytes on a new connection (framing tricks no HTTP library
//! would write), and each asserts the status and envelope (`error.type`, `param`, the request
//! id), no 5xx, no upstream call for a refused request (one for a served one), and that the
//! gateway serves a normal request afterwards. Slow clients: a trickled body, silent and
//! slowloris connections, idle keep-alive connections, the connection cap and graceful
//! shutdown, with the figures printed.

// The example's own configuration and stack; the tests use most, not all, of what they expose.
#[allow(dead_code)]
#[path = "../examples/gateway/backends.rs"]
mod backends;
#[allow(dead_code)]
#[path = "../examples/gateway/config.rs"]
mod config;
#[allow(dead_code)]
#[path = "../examples/gateway/stack.rs"]
mod stack;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_testkit::{MockUpstream, RawResponse, TestServer, raw_exchange, read_response};

const DEMO: &str = "sk-llmaai-demo-0123456789abcdef0123456789abcdef";
const BROKE: &str = "sk-llmaai-broke-0123456789abcdef0123456789abcd";
const MINI: &str = "sk-llmaai-mini-0123456789abcdef0123456789abcde";

/// The demo configuration with quotas and a balance no case runs out of, a passthrough
/// route, a 2 s body read timeout (the cases that declare a body they never finish end
/// then), and one retry.
fn hostile_config() -> config::Config {
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.upstream.max_retries = 1;
    config.guard.read_timeout_secs = 2;
    config.limits.requests_per_minute = Some(1_000_000);
    config.limits.tokens_per_minute = Some(1_000_000_000_000);
    config.limits.model_requests_per_minute = Some(1_000_000);
    config.routes.passthrough = vec!["POST /v1/uploads".into()];
    for account in &mut config.accounts {
        if account.id == "acct_demo" {
            account.balance = 1_000_000_000_000_000;
        }
    }
    config
}

struct Running {
    server: TestServer,
    upstream: MockUpstream,
}

async fn start(config: &config::Config) -> Running {
    let upstream = MockUpstream::start().await;
    let (gateway, _handles) = stack::build(config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    let limits = config.server.limits().unwrap();
    Running {
        server: TestServer::start_with(gateway, limits).await,
        upstream,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests as bytes.

/// A request head and body, written out as bytes by [`Req::bytes`]: `host`, the demo key, a
/// JSON content type and the body's `content-length` unless the case says otherwise.
#[derive(Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    key: Option<String>,
}

fn req(method: &str, target: &str) -> Req {
    Req {
        method: method.into(),
        target: target.into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: Vec::new(),
        key: Some(DEMO.into()),
    }
}

fn post(target: &str, body: impl Into<Vec<u8>>) -> Req {
    let mut request = req("POST", target);
    request.body = body.into();
    request
}

fn chat(body: impl Into<Vec<u8>>) -> Req {
    post("/v1/chat/completions", body)
}

impl Req {
    fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(existing, _)| existing != name);
        self
    }

    fn key(mut self, key: &str) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The `authorization` header exactly as given (or none), in place of the demo key's.
    fn authorization(mut self, value: Option<&[u8]>) -> Self {
        self.key = None;
        match value {
            Some(value) => self.header("authorization", value),
            None => self,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nhost: gateway\r\n",
            self.method, self.target
        )
        .into_bytes();
        if let Some(key) = &self.key {
            out.extend_from_slice(format!("authorization: Bearer {key}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A chat body that passes every check, with `field` set to `value` (`None`: removed).
fn chat_body(field: &str, value: Option<Value>) -> Vec<u8> {
    let mut body = json!({
        "model": "gpt-5.4",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 16,
    });
    set(&mut body, field, value);
    body.to_string().into_bytes()
}

/// A body for `endpoint` that passes every check, with `field` set to `value` (`None`: removed).
fn body_for(endpoint: &str, field: &str, value: Option<Value>) -> Vec<u8> {
    let mut body = match endpoint {
        "/v1/responses" => {
            json!({"model": "gpt-5.4", "input": "Say hello", "max_output_tokens": 16})
        }
        "/v1/completions" => {
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello", "max_tokens": 16})
        }
        "/v1/embeddings" => json!({"model": "text-embedding-3-small", "input": "Say hello"}),
        _ => return chat_body(field, value),
    };
    set(&mut body, field, value);
    body.to_string().into_bytes()
}

/// Sets `path` (members joined by `.`, array indexes as numbers) to `value`, or removes it.
fn set(body: &mut Value, path: &str, value: Option<Value>) {
    let mut target = body;
    let mut members = path.split('.').peekable();
    while let Some(member) = members.next() {
        if members.peek().is_none() {
            match (value, target) {
                (Some(value), Value::Object(map)) => {
                    map.insert(member.into(), value);
                }
                (None, Value::Object(map)) => {
                    map.remove(member);
                }
                (Some(value), Value::Array(items)) => {
                    items[member.parse::<usize>().unwrap()] = value
                }
                _ => unreachable!("{path} names a member or an item"),
            }
            return;
        }
        target = match member.parse::<usize>() {
            Ok(index) => &mut target[index],
            Err(_) => &mut target[member],
        };
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

/// What a case must get back.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The gateway's envelope: the status, `error.type`, and `error.param` when one is given
    /// (`None`: not checked); a request id in the body and in `x-request-id`; nothing sent
    /// upstream.
    Refused(u16, &'static str, Option<&'static str>),
    /// Served: the status, and exactly one call upstream.
    Served(u16),
    /// Answered by the gateway itself without a body (a `HEAD`): the status and `x-request-id`;
    /// nothing sent upstream.
    Head(u16),
    /// hyper's own refusal of a request head it cannot parse, before any request exists: the
    /// status with an empty body and no request id, then the connection closes (README: "Errors
    /// outside the envelope"); nothing sent upstream.
    Unparsed(u16),
    /// Not HTTP/1 at all: the connection closes without an answer; nothing sent upstream.
    Dropped,
}

struct Case {
    name: String,
    request: Vec<u8>,
    expect: Expect,
}

fn case(name: impl Into<String>, request: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        request: request.into(),
        expect,
    }
}

use Expect::{Dropped, Head, Refused, Served, Unparsed};

const INVALID: &str = "invalid_request_error";

/// Broken, deep, huge and odd JSON on the chat endpoint.
#[rustfmt::skip] // one case a line: the table reads as a table
fn json_cases() -> Vec<Case> {
    let valid =
        r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;
    let deep = |depth: usize| {
        format!(
            r#"{{"model":"gpt-5.4","messages":[{{"role":"user","content":"hi"}}],"metadata":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let mut invalid_utf8 =
        br#"{"model":"gpt-5.4","messages":[{"role":"user","content":"caf"#.to_vec();
    invalid_utf8.extend_from_slice(b"\xC3\x28\xFF\"}]}");
    let mut raw_nul = br#"{"model":"gpt-5.4","messages":[{"role":"user","content":"a"#.to_vec();
    raw_nul.extend_from_slice(b"\0b\"}]}");
    let megabyte = "a".repeat(1 << 20);
    let many_messages: Vec<Value> = (0..100_000)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    vec![
        case("empty body", chat(""), Refused(400, INVALID, None)),
        case("truncated object", chat("{"), Refused(400, INVALID, None)),
        case("a closing brace missing", chat(&valid[..valid.len() - 1]), Refused(400, INVALID, None)),
        case("a stray bracket", chat(r#"{"model":"gpt-5.4","messages":[}"#), Refused(400, INVALID, None)),
        case("trailing garbage", chat(format!("{valid}xyz")), Refused(400, INVALID, None)),
        case("two objects", chat(format!("{valid}{valid}")), Refused(400, INVALID, None)),
        case("not JSON", chat("hello"), Refused(400, INVALID, None)),
        case("a JSON array", chat("[]"), Refused(400, INVALID, None)),
        case("a JSON string", chat(r#""gpt-5.4""#), Refused(400, INVALID, None)),
        case("JSON null", chat("null"), Refused(400, INVALID, None)),
        case("a trailing comma", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"},]}"#), Refused(400, INVALID, None)),
        case("single quotes", chat("{'model':'gpt-5.4'}"), Refused(400, INVALID, None)),
        case("a comment", chat(r#"{/* c */"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#), Refused(400, INVALID, None)),
        case("NaN", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"temperature":NaN}"#), Refused(400, INVALID, None)),
        case("nested 100,000 deep in an unread member", chat(deep(100_000)), Refused(400, INVALID, None)),
        case("nested 10,000 deep in content", chat(format!(r#"{{"model":"gpt-5.4","messages":[{{"role":"user","content":{}{}}}]}}"#, "[".repeat(10_000), "]".repeat(10_000))), Refused(400, INVALID, None)),
        case("nested 100 deep in an unread member", chat(deep(100)), Served(200)),
        case("invalid UTF-8 in a string", chat(invalid_utf8), Refused(400, INVALID, None)),
        case("a lone high surrogate", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"\ud800"}]}"#), Refused(400, INVALID, None)),
        case("a lone low surrogate", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"x\udc00y"}]}"#), Refused(400, INVALID, None)),
        case("a surrogate pair", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"\ud83d\ude00"}],"max_tokens":16}"#), Served(200)),
        case("a duplicate model", chat(r#"{"model":"gpt-5.4-mini","model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#), Refused(400, INVALID, Some("model"))),
        case("a duplicate messages", chat(r#"{"model":"gpt-5.4","messages":[],"messages":[{"role":"user","content":"hi"}]}"#), Refused(400, INVALID, Some("messages"))),
        case("a duplicate role", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","role":"system","content":"hi"}]}"#), Refused(400, INVALID, None)),
        case("a duplicate max_tokens", chat(r#"{"model":"gpt-5.4","max_tokens":1,"max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}"#), Refused(400, INVALID, Some("max_tokens"))),
        case("a duplicate stream", chat(r#"{"model":"gpt-5.4","stream":false,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#), Refused(400, INVALID, Some("stream"))),
        case("a raw NUL in a string", chat(raw_nul), Refused(400, INVALID, None)),
        case("an escaped NUL in content", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"a\u0000b"}],"max_tokens":16}"#), Served(200)),
        case("a NUL in the model", chat(r#"{"model":"gpt-5.4\u0000","messages":[{"role":"user","content":"hi"}]}"#), Refused(404, "model_not_found", Some("model"))),
        case("a 1 MB content string", chat(chat_body("messages", Some(json!([{"role": "user", "content": megabyte}])))), Served(200)),
        case("a 1 MB model", chat(chat_body("model", Some(json!(megabyte)))), Refused(404, "model_not_found", Some("model"))),
        case("a 1 MB member name", chat(format!(r#"{{"model":"gpt-5.4","messages":[{{"role":"user","content":"hi"}}],"max_tokens":16,"{megabyte}":1}}"#)), Served(200)),
        case("100,000 messages", chat(chat_body("messages", Some(Value::Array(many_messages)))), Refused(413, "request_too_large", None)),
        case("a body over the 4 MiB limit", chat(chat_body("messages", Some(json!([{"role": "user", "content": "a".repeat(4 << 20)}])))), Refused(413, "request_too_large", None)),
        case("unicode everywhere", chat(chat_body("messages", Some(json!([{"role": "user", "content": "héllo \u{202e} 你好 🦀 \u{feff}"}])))), Served(200)),
        case("a BOM before the body", chat([b"\xEF\xBB\xBF".as_slice(), valid.as_bytes()].concat()), Refused(400, INVALID, None)),
        case("whitespace around the body", chat(format!(" \n\t{valid}\r\n ")), Served(200)),
    ]
}

/// Numbers no field can hold.
#[rustfmt::skip] // one case a line: the table reads as a table
fn number_cases() -> Vec<Case> {
    let number = |field: &str, raw: &str| {
        chat(format!(
            r#"{{"model":"gpt-5.4","messages":[{{"role":"user","content":"hi"}}],"{field}":{raw}}}"#
        ))
    };
    vec![
        case("max_tokens 1e999", number("max_tokens", "1e999"), Refused(400, INVALID, Some("max_tokens"))),
        case("max_tokens 2^64", number("max_tokens", "18446744073709551616"), Refused(400, INVALID, Some("max_tokens"))),
        case("max_tokens 30 digits", number("max_tokens", "123456789012345678901234567890"), Refused(400, INVALID, Some("max_tokens"))),
        case("max_tokens 1e30", number("max_tokens", "1e30"), Refused(400, INVALID, Some("max_tokens"))),
        case("max_tokens -0", number("max_tokens", "-0"), Refused(400, INVALID, Some("max_tokens"))),
        case("n 2^64", number("n", "18446744073709551616"), Refused(400, INVALID, Some("n"))),
        case("temperature 1e999", number("temperature", "1e999"), Refused(400, INVALID, Some("temperature"))),
        case("temperature -1e999", number("temperature", "-1e999"), Refused(400, INVALID, Some("temperature"))),
        case("top_p 1e-999", number("top_p", "1e-999"), Served(200)),
        case("max_tokens above the model's max output", chat(r#"{"model":"gpt-5.4-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":200000}"#), Refused(400, INVALID, Some("max_tokens"))),
        case("max_completion_tokens above the model's max output", chat(r#"{"model":"gpt-5.4-mini","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":16385}"#), Refused(400, INVALID, Some("max_completion_tokens"))),
        case("stream_options a string", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":"x"}"#), Refused(400, INVALID, Some("stream_options"))),
        case("stream_options a number", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":1}"#), Refused(400, INVALID, Some("stream_options"))),
        case("stream_options an array", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":[]}"#), Refused(400, INVALID, Some("stream_options"))),
        case("include_usage a string", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":"yes"}}"#), Refused(400, INVALID, Some("stream_options.include_usage"))),
        case("a content part that is a number", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":[1]}]}"#), Refused(400, INVALID, Some("messages[0].content[0]"))),
        case("a content part that is an array", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":[[]]}]}"#), Refused(400, INVALID, Some("messages[0].content[0]"))),
        case("a content part of an unknown type", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":[{"type":"hologram"}]}]}"#), Refused(400, INVALID, Some("messages[0].content[0].type"))),
        case("a text part whose text is a number", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":[{"type":"text","text":5}]}]}"#), Refused(400, INVALID, Some("messages[0].content[0].text"))),
        case("an image part", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}],"max_tokens":16}"#), Served(200)),
        case("stream_options without stream", chat(r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}"#), Refused(400, INVALID, Some("stream_options"))),
    ]
}

/// Every wrong type for every field the gateway reads, on its endpoint.
#[rustfmt::skip] // one case a line: the table reads as a table
fn wrong_type_cases() -> Vec<Case> {
    let samples = [
        ("null", json!(null)),
        ("true", json!(true)),
        ("1", json!(1)),
        ("-1", json!(-1)),
        ("1.5", json!(1.5)),
        ("\"x\"", json!("x")),
        ("[]", json!([])),
        ("{}", json!({})),
    ];
    // The field, its endpoint, and the samples of the wrong type for it.
    let fields: &[(&str, &str, &[&str])] = &[
        ("model", "/v1/chat/completions", &["null", "true", "1", "[]", "{}"]),
        ("messages", "/v1/chat/completions", &["null", "true", "1", "\"x\"", "{}", "[]"]),
        ("messages.0", "/v1/chat/completions", &["null", "true", "1", "\"x\"", "[]", "{}"]),
        ("messages.0.role", "/v1/chat/completions", &["null", "true", "1", "\"x\"", "[]", "{}"]),
        ("messages.0.content", "/v1/chat/completions", &["true", "1", "{}"]),
        ("max_tokens", "/v1/chat/completions", &["true", "-1", "1.5", "\"x\"", "[]", "{}"]),
        ("max_completion_tokens", "/v1/chat/completions", &["true", "-1", "1.5", "\"x\"", "[]", "{}"]),
        ("n", "/v1/chat/completions", &["true", "-1", "1.5", "\"x\"", "[]", "{}"]),
        ("temperature", "/v1/chat/completions", &["true", "-1", "\"x\"", "[]", "{}"]),
        ("top_p", "/v1/chat/completions", &["true", "-1", "\"x\"", "[]", "{}"]),
        ("stream", "/v1/chat/completions", &["1", "\"x\"", "[]", "{}"]),
        ("model", "/v1/responses", &["null", "true", "1", "[]", "{}"]),
        ("input", "/v1/responses", &["null", "true", "1", "{}"]),
        ("max_output_tokens", "/v1/responses", &["true", "-1", "1.5", "\"x\"", "[]", "{}"]),
        ("model", "/v1/completions", &["null", "true", "1", "[]", "{}"]),
        ("prompt", "/v1/completions", &["null", "true", "{}"]),
        ("max_tokens", "/v1/completions", &["true", "-1", "1.5", "\"x\"", "[]", "{}"]),
        ("model", "/v1/embeddings", &["null", "true", "1", "[]", "{}"]),
        ("input", "/v1/embeddings", &["null", "true", "{}", "[]"]),
    ];
    let mut cases = Vec::new();
    for (field, endpoint, wrong) in fields {
        for (label, value) in samples.iter().filter(|(label, _)| wrong.contains(label)) {
            let param = match *field {
                "messages.0" | "messages.0.role" | "messages.0.content" => None,
                field => Some(field),
            };
            cases.push(case(
                format!("{endpoint} {field}: {label}"),
                post(endpoint, body_for(endpoint, field, Some(value.clone()))),
                Refused(400, INVALID, param),
            ));
        }
    }
    let missing: &[(&str, &str)] = &[
        ("model", "/v1/chat/completions"),
        ("messages", "/v1/chat/completions"),
        ("input", "/v1/responses"),
        ("prompt", "/v1/completions"),
        ("input", "/v1/embeddings"),
    ];
    for (field, endpoint) in missing {
        cases.push(case(
            format!("{endpoint} without {field}"),
            post(endpoint, body_for(endpoint, field, None)),
            Refused(400, INVALID, Some(field)),
        ));
    }
    cases.extend([
        case("fallbacks: a string", chat(chat_body("fallbacks", Some(json!("gpt-5.4-mini")))), Refused(400, INVALID, Some("fallbacks"))),
        case("fallbacks: a number", chat(chat_body("fallbacks", Some(json!(1)))), Refused(400, INVALID, Some("fallbacks"))),
        case("fallbacks: an object", chat(chat_body("fallbacks", Some(json!({})))), Refused(400, INVALID, Some("fallbacks"))),
        case("fallbacks: [1]", chat(chat_body("fallbacks", Some(json!([1])))), Refused(400, INVALID, Some("fallbacks[0]"))),
        case("fallbacks: [null]", chat(chat_body("fallbacks", Some(json!([null])))), Refused(400, INVALID, Some("fallbacks[0]"))),
        case("fallbacks: an unknown model", chat(chat_body("fallbacks", Some(json!(["nope"])))), Refused(404, "model_not_found", Some("fallbacks[0]"))),
        case("fallbacks: a retired model", chat(chat_body("fallbacks", Some(json!(["gpt-4o"])))), Refused(410, "model_retired", Some("fallbacks[0]"))),
        case("role: an unknown role", chat(chat_body("messages.0.role", Some(json!("wizard")))), Refused(400, INVALID, None)),
        case("responses max_output_tokens below 16", post("/v1/responses", body_for("/v1/responses", "max_output_tokens", Some(json!(5)))), Refused(400, INVALID, Some("max_output_tokens"))),
        case("n above 128", chat(chat_body("n", Some(json!(129)))), Refused(400, INVALID, Some("n"))),
        case("temperature above 2", chat(chat_body("temperature", Some(json!(2.5)))), Refused(400, INVALID, Some("temperature"))),
        case("embeddings: 2049 inputs", post("/v1/embeddings", body_for("/v1/embeddings", "input", Some(json!(vec!["x"; 2049])))), Refused(400, INVALID, Some("input"))),
        case("embeddings: an empty string", post("/v1/embeddings", body_for("/v1/embeddings", "input", Some(json!("")))), Refused(400, INVALID, Some("input"))),
        case("model: an embedding model on chat", chat(chat_body("model", Some(json!("text-embedding-3-small")))), Refused(400, "unsupported_operation", Some("model"))),
        case("model: retired", chat(chat_body("model", Some(json!("gpt-4o")))), Refused(410, "model_retired", Some("model"))),
        case("model: another case", chat(chat_body("model", Some(json!("GPT-5.4")))), Refused(404, "model_not_found", Some("model"))),
        case("model: padded", chat(chat_body("model", Some(json!(" gpt-5.4 ")))), Refused(404, "model_not_found", Some("model"))),
        case("model: empty", chat(chat_body("model", Some(json!("")))), Refused(400, INVALID, Some("model"))),
    ]);
    cases
}

/// What the body claims to be.
#[rustfmt::skip] // one case a line: the table reads as a table
fn content_type_cases() -> Vec<Case> {
    let body = chat_body("model", Some(json!("gpt-5.4")));
    let typed = |content_type: &[u8]| {
        chat(body.clone())
            .without_header("content-type")
            .header("content-type", content_type)
    };
    vec![
        case("text/plain", typed(b"text/plain"), Served(200)),
        case("form-urlencoded", typed(b"application/x-www-form-urlencoded"), Served(200)),
        case("multipart", typed(b"multipart/form-data; boundary=x"), Served(200)),
        case("no content type", chat(body.clone()).without_header("content-type"), Served(200)),
        case("two content types", typed(b"application/json").header("content-type", "text/html"), Served(200)),
        case("json with a charset", typed(b"application/json; charset=utf-16"), Served(200)),
        case("a gzip encoding", chat(body.clone()).header("content-encoding", "gzip"), Served(200)),
        case("a broke key, as a form", typed(b"application/x-www-form-urlencoded").key(BROKE), Refused(402, "insufficient_balance", None)),
        case("a restricted key, as text", typed(b"text/plain").key(MINI), Refused(403, "forbidden", Some("model"))),
    ]
}

/// Content-Length and Transfer-Encoding games, and heads hyper cannot parse.
#[rustfmt::skip] // one case a line: the table reads as a table
fn framing_cases() -> Vec<Case> {
    let body = String::from_utf8(chat_body("model", Some(json!("gpt-5.4")))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {DEMO}\r\ncontent-type: application/json\r\n"
    );
    let len = body.len();
    let chunked = format!("{len:x}\r\n{body}\r\n0\r\n\r\n");
    vec![
        case("CL and TE: chunked", format!("{head}content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n{chunked}"), Served(200)),
        case("two different CLs", format!("{head}content-length: {len}\r\ncontent-length: 3\r\n\r\n{body}"), Unparsed(400)),
        case("two equal CLs", format!("{head}content-length: {len}\r\ncontent-length: {len}\r\n\r\n{body}"), Served(200)),
        case("a negative CL", format!("{head}content-length: -1\r\n\r\n{body}"), Unparsed(400)),
        case("a CL with a sign", format!("{head}content-length: +{len}\r\n\r\n{body}"), Unparsed(400)),
        case("a CL in hex", format!("{head}content-length: 0x10\r\n\r\n{body}"), Unparsed(400)),
        case("a CL list", format!("{head}content-length: {len}, 3\r\n\r\n{body}"), Unparsed(400)),
        case("a CL beyond u64", format!("{head}content-length: 99999999999999999999999\r\n\r\n{body}"), Unparsed(400)),
        case("a CL over the body limit", format!("{head}content-length: 5000000\r\n\r\n{body}"), Refused(413, "request_too_large", None)),
        case("a CL shorter than the body", format!("{head}content-length: 10\r\n\r\n{body}"), Refused(400, INVALID, None)),
        case("a CL longer than the body", format!("{head}content-length: {}\r\n\r\n{body}", len + 10), Refused(408, "request_timeout", None)),
        case("a chunk size that is not hex", format!("{head}transfer-encoding: chunked\r\n\r\nzz\r\n{body}\r\n0\r\n\r\n"), Refused(400, INVALID, None)),
        case("a chunk size beyond u64", format!("{head}transfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\n{body}\r\n0\r\n\r\n"), Refused(400, INVALID, None)),
        case("a chunk longer than its size", format!("{head}transfer-encoding: chunked\r\n\r\n2\r\n{body}\r\n0\r\n\r\n"), Refused(400, INVALID, None)),
        case("no last chunk", format!("{head}transfer-encoding: chunked\r\n\r\n{len:x}\r\n{body}\r\n"), Refused(408, "request_timeout", None)),
        case("chunked in pieces", format!("{head}transfer-encoding: chunked\r\n\r\n1\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n", &body[..1], len - 1, &body[1..]), Served(200)),
        case("chunk extensions", format!("{head}transfer-encoding: chunked\r\n\r\n{len:x};name=value\r\n{body}\r\n0\r\n\r\n"), Served(200)),
        // hyper removes the chunked framing and leaves the other coding to the service, which
        // reads every body as JSON: the body is what the provider gets, framed anew.
        case("TE: gzip, chunked", format!("{head}transfer-encoding: gzip, chunked\r\n\r\n{chunked}"), Served(200)),
        case("TE: chunked, gzip", format!("{head}transfer-encoding: chunked, gzip\r\n\r\n{chunked}"), Unparsed(400)),
        case("TE: xchunked", format!("{head}transfer-encoding: xchunked\r\n\r\n{chunked}"), Unparsed(400)),
        case("TE twice", format!("{head}transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n{chunked}"), Served(200)),
        case("TE on HTTP/1.0", format!("POST /v1/chat/completions HTTP/1.0\r\nhost: gateway\r\nauthorization: Bearer {DEMO}\r\ntransfer-encoding: chunked\r\n\r\n{chunked}"), Unparsed(400)),
        case("a space before the colon", format!("{head}transfer-encoding : chunked\r\n\r\n{chunked}"), Unparsed(400)),
        case("obs-fold", format!("{head}x-folded: a\r\n b\r\ncontent-length: {len}\r\n\r\n{body}"), Unparsed(400)),
        case("an LF in a header value", format!("{head}x-bad: a\nb\r\ncontent-length: {len}\r\n\r\n{body}"), Unparsed(400)),
        case("a CR in a header value", format!("{head}x-bad: a\rb\r\ncontent-length: {len}\r\n\r\n{body}"), Unparsed(400)),
        case("a NUL in a header value", format!("{head}x-bad: a\0b\r\ncontent-length: {len}\r\n\r\n{body}"), Unparsed(400)),
        case("a header without a colon", format!("{head}x-bad\r\ncontent-length: {len}\r\n\r\n{body}"), Unparsed(400)),
        case("a space in a header name", format!("{head}x bad: 1\r\ncontent-length: {len}\r\n\r\n{body}"), Unparsed(400)),
        case("bare LF line ends", format!("POST /v1/chat/completions HTTP/1.1\nhost: gateway\nauthorization: Bearer {DEMO}\ncontent-length: {len}\n\n{body}"), Served(200)),
        case("blank lines before the request", format!("\r\n\r\n{head}content-length: {len}\r\n\r\n{body}"), Served(200)),
        case("HTTP/1.0", format!("POST /v1/chat/completions HTTP/1.0\r\nauthorization: Bearer {DEMO}\r\ncontent-length: {len}\r\n\r\n{body}"), Served(200)),
        case("HTTP/0.9", "GET /v1/models\r\n\r\n", Unparsed(400)),
        case("HTTP/1.2", "POST /v1/chat/completions HTTP/1.2\r\nhost: gateway\r\n\r\n", Unparsed(400)),
        case("an HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Dropped),
        case("a TLS client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), Unparsed(400)),
        case("two spaces in the request line", "POST  /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n\r\n", Unparsed(400)),
        case("a lowercase version", "POST /v1/chat/completions http/1.1\r\nhost: gateway\r\n\r\n", Unparsed(400)),
        case("expect 100-continue", format!("{head}expect: 100-continue\r\ncontent-length: {len}\r\n\r\n{body}"), Served(200)),
        case("an unknown expectation", format!("{head}expect: teapot\r\ncontent-length: {len}\r\n\r\n{body}"), Served(200)),
        case("upgrade: websocket", format!("{head}connection: upgrade\r\nupgrade: websocket\r\ncontent-length: {len}\r\n\r\n{body}"), Served(200)),
        case("upgrade: h2c", format!("{head}connection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\ncontent-length: {len}\r\n\r\n{body}"), Served(200)),
        case("a 500 kB header", format!("{head}x-big: {}\r\ncontent-length: {len}\r\n\r\n{body}", "a".repeat(500_000)), Unparsed(431)),
        case("a head just over 64 KiB", format!("{head}x-big: {}\r\ncontent-length: {len}\r\n\r\n{body}", "a".repeat(65_536 - head.len())), Unparsed(431)),
        case("a 60 kB header", format!("{head}x-big: {}\r\ncontent-length: {len}\r\n\r\n{body}", "a".repeat(60_000)), Served(200)),
        case("101 headers", format!("{head}{}content-length: {len}\r\n\r\n{body}", (0..101).map(|i| format!("x-h{i}: 1\r\n")).collect::<String>()), Unparsed(431)),
        case("a 70 kB URI, a head over 64 KiB", format!("GET /v1/models/{} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {DEMO}\r\n\r\n", "a".repeat(70_000)), Unparsed(431)),
        case("an 8 kB header", format!("{head}x-big: {}\r\ncontent-length: {len}\r\n\r\n{body}", "a".repeat(8_192)), Served(200)),
        case("non-ASCII in a header value", [format!("{head}x-name: ").as_bytes(), "héllo".as_bytes(), format!("\r\ncontent-length: {len}\r\n\r\n{body}").as_bytes()].concat(), Served(200)),
    ]
}

/// Credentials in every wrong shape.
#[rustfmt::skip] // one case a line: the table reads as a table
fn credential_cases() -> Vec<Case> {
    let body = chat_body("model", Some(json!("gpt-5.4")));
    let with = |value: &[u8]| chat(body.clone()).authorization(Some(value));
    let unknown_key = format!("Bearer {}", DEMO.replace("demo", "nope"));
    vec![
        case("no Authorization", chat(body.clone()).authorization(None), Refused(401, "auth_error", None)),
        case("an empty Authorization", with(b""), Refused(401, "auth_error", None)),
        case("Bearer and no key", with(b"Bearer"), Refused(401, "auth_error", None)),
        case("lowercase bearer", with(format!("bearer {DEMO}").as_bytes()), Served(200)),
        case("uppercase BEARER", with(format!("BEARER {DEMO}").as_bytes()), Served(200)),
        case("two spaces after Bearer", with(format!("Bearer  {DEMO}").as_bytes()), Refused(401, "auth_error", None)),
        case("a tab after Bearer", with(format!("Bearer\t{DEMO}").as_bytes()), Refused(401, "auth_error", None)),
        case("a trailing space", with(format!("Bearer {DEMO} ").as_bytes()), Served(200)),
        case("the key twice", with(format!("Bearer {DEMO} {DEMO}").as_bytes()), Refused(401, "auth_error", None)),
        case("Basic", with(b"Basic dXNlcjpwYXNz"), Refused(401, "auth_error", None)),
        case("a raw key without a scheme", with(DEMO.as_bytes()), Refused(401, "auth_error", None)),
        case("an unknown key", with(unknown_key.as_bytes()), Refused(401, "auth_error", None)),
        case("a foreign prefix", with(b"Bearer sk-proj-0123456789abcdef"), Refused(401, "auth_error", None)),
        case("a unicode key", with(format!("Bearer {}", DEMO.replace("demo", "démo")).as_bytes()), Refused(401, "auth_error", None)),
        case("a unicode scheme", with(format!("Bëarer {DEMO}").as_bytes()), Refused(401, "auth_error", None)),
        case("a 10 kB key", with(format!("Bearer sk-llmaai-{}", "a".repeat(10_000)).as_bytes()), Refused(401, "auth_error", None)),
        case("two Authorization headers, the valid first", chat(body.clone()).header("authorization", "Bearer sk-llmaai-other"), Refused(401, "auth_error", None)),
        case("two Authorization headers, the valid second", with(b"Bearer sk-llmaai-other").header("authorization", format!("Bearer {DEMO}")), Refused(401, "auth_error", None)),
        case("the same Authorization twice", chat(body.clone()).header("authorization", format!("Bearer {DEMO}")), Refused(401, "auth_error", None)),
        case("a key in x-api-key only", chat(body.clone()).authorization(None).header("x-api-key", DEMO), Refused(401, "auth_error", None)),
        case("a broke key", chat(body.clone()).key(BROKE), Refused(402, "insufficient_balance", None)),
        case("a restricted key", chat(body.clone()).key(MINI), Refused(403, "forbidden", Some("model"))),
    ]
}

/// Paths the gateway must not mistake for its endpoints.
#[rustfmt::skip] // one case a line: the table reads as a table
fn path_cases() -> Vec<Case> {
    let body = chat_body("model", Some(json!("gpt-5.4")));
    let at = |target: &str| post(target, body.clone());
    let unknown = Refused(404, "unknown_route", None);
    vec![
        case("a trailing slash", at("/v1/chat/completions/"), unknown),
        case("a leading double slash", at("//v1/chat/completions"), unknown),
        case("a double slash inside", at("/v1//chat/completions"), unknown),
        case("a dot segment", at("/v1/./chat/completions"), unknown),
        case("a dot-dot segment", at("/v1/x/../chat/completions"), unknown),
        case("encoded slashes", at("/v1%2Fchat%2Fcompletions"), unknown),
        case("an encoded dot-dot", at("/v1/x/%2e%2e/chat/completions"), unknown),
        case("an encoded letter", at("/v1/chat/c%6fmpletions"), unknown),
        case("an encoded NUL", at("/v1/chat/completions%00"), unknown),
        case("uppercase", at("/V1/CHAT/COMPLETIONS"), unknown),
        case("a matrix parameter", at("/v1/chat/completions;x=1"), unknown),
        case("a backslash", at("/v1\\chat\\completions"), unknown),
        case("a query string", at("/v1/chat/completions?api-version=1&x=%00"), Served(200)),
        // The URI parser drops a fragment: the path is the endpoint's, and it goes upstream
        // without the fragment.
        case("a fragment", at("/v1/chat/completions#top"), Served(200)),
        case("absolute form", at("http://evil.example/v1/chat/completions"), Served(200)),
        case("absolute form, https and a port", at("https://evil.example:8443/v1/chat/completions"), Served(200)),
        case("an asterisk", at("*"), unknown),
        case("OPTIONS *", req("OPTIONS", "*"), unknown),
        case("an 8 kB path", at(&format!("/v1/{}", "a".repeat(8_192))), unknown),
        case("a raw non-ASCII path", at("/v1/chat/compl\u{e9}tions"), unknown),
        case("a models id with dot-dot", req("GET", "/v1/models/../chat/completions"), unknown),
        case("a models id with an encoded dot-dot", req("GET", "/v1/models/%2e%2e"), Refused(404, "model_not_found", None)),
        case("an unknown model id", req("GET", "/v1/models/gpt-9"), Refused(404, "model_not_found", None)),
        case("a passthrough route with a trailing slash", at("/v1/uploads/"), unknown),
        case("the root", req("GET", "/"), unknown),
    ]
}

/// Every method on every endpoint.
fn method_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let metered = [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/completions",
        "/v1/embeddings",
    ];
    for path in metered {
        for method in [
            "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PURGE", "post",
        ] {
            let request = post(path, body_for(path, "model", Some(json!("gpt-5.4"))));
            let request = Req {
                method: method.into(),
                ..request
            };
            cases.push(case(
                format!("{method} {path}"),
                request,
                Refused(405, "method_not_allowed", None),
            ));
        }
        cases.push(case(format!("HEAD {path}"), req("HEAD", path), Head(405)));
        cases.push(case(
            format!("CONNECT {path}"),
            req("CONNECT", path),
            Refused(405, "method_not_allowed", None),
        ));
    }
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        cases.push(case(
            format!("{method} /v1/models"),
            req(method, "/v1/models"),
            Refused(405, "method_not_allowed", None),
        ));
    }
    cases.push(case(
        "HEAD /v1/models",
        req("HEAD", "/v1/models"),
        Head(200),
    ));
    cases.push(case(
        "CONNECT gateway:443",
        format!("CONNECT gateway:443 HTTP/1.1\r\nhost: gateway:443\r\nauthorization: Bearer {DEMO}\r\n\r\n"),
        Refused(404, "unknown_route", None),
    ));
    cases.push(case(
        "GET on a POST passthrough",
        req("GET", "/v1/uploads"),
        Refused(405, "method_not_allowed", None),
    ));
    cases
}

impl From<Req> for Vec<u8> {
    fn from(request: Req) -> Vec<u8> {
        request.bytes()
    }
}

/// A normal completion: the gateway still serves after whatever came before.
async fn assert_serves(running: &Running, after: &str) {
    let calls = running.upstream.calls().len();
    let request = http::Request::post("/v1/chat/completions")
        .header("host", "gateway")
        .header("authorization", format!("Bearer {DEMO}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(chat_body(
            "model",
            Some(json!("gpt-5.4")),
        ))))
        .unwrap();
    let response = tollgate_testkit::send(running.server.addr(), request)
        .await
        .unwrap_or_else(|error| panic!("after {after}: {error}"));
    assert_eq!(response.status(), 200, "after {after}");
    assert_eq!(running.upstream.calls().len(), calls + 1, "after {after}");
}

/// Checks one case's answer; the mismatch, if any.
fn check(case: &Case, response: &RawResponse, upstream_calls: usize) -> Result<(), String> {
    let json = response.json();
    let request_id = response.header("x-request-id");
    if response.status >= 500 {
        return Err(format!("a {} from the gateway", response.status));
    }
    let expected_calls = usize::from(matches!(case.expect, Served(_)));
    if upstream_calls != expected_calls {
        return Err(format!("{upstream_calls} upstream calls"));
    }
    match case.expect {
        Refused(status, kind, param) => {
            let json = json.ok_or("no JSON envelope")?;
            let got_param = json["error"]["param"].as_str();
            let got = (response.status, json["error"]["type"].as_str());
            if got != (status, Some(kind)) || param.is_some_and(|param| got_param != Some(param)) {
                return Err(format!("got {got:?}: {json}"));
            }
            if request_id.is_none() || json["request_id"].as_str() != request_id {
                return Err(format!("request ids differ: {request_id:?} and {json}"));
            }
        }
        Served(status) if response.status != status => {
            return Err(format!("got {}: {:?}", response.status, response.body));
        }
        Served(_) => {}
        Head(status) => {
            if response.status != status || request_id.is_none() {
                return Err(format!("got {} ({request_id:?})", response.status));
            }
        }
        Dropped => return Err(format!("got {}", response.status)),
        Unparsed(status) => {
            if response.status != status || !response.body.is_empty() || !response.closed {
                return Err(format!(
                    "got {} with {:?} (closed: {})",
                    response.status, response.body, response.closed
                ));
            }
        }
    }
    Ok(())
}

/// The table, end to end: at least 80 cases, each checked, the gateway serving after each.
#[tokio::test]
async fn hostile_requests_get_the_expected_answers() {
    let _serial = SERIAL.lock().await;
    let running = start(&hostile_config()).await;
    let tables = [
        ("json", json_cases()),
        ("numbers", number_cases()),
        ("wrong types", wrong_type_cases()),
        ("content types", content_type_cases()),
        ("framing", framing_cases()),
        ("credentials", credential_cases()),
        ("paths", path_cases()),
        ("methods", method_cases()),
    ];
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut count = 0;
    for (table, cases) in tables {
        for case in cases {
            count += 1;
            let calls = running.upstream.calls().len();
            let outcome = match raw_exchange(running.server.addr(), &case.request).await {
                Ok(response) => check(&case, &response, running.upstream.calls().len() - calls),
                Err(error) if matches!(case.expect, Dropped) => {
                    match (error.kind(), running.upstream.calls().len() - calls) {
                        (std::io::ErrorKind::UnexpectedEof, 0) => Ok(()),
                        (kind, calls) => Err(format!("{kind:?} and {calls} upstream calls")),
                    }
                }
                Err(error) => Err(format!("no response: {error}")),
            };
            if let Err(mismatch) = outcome {
                failures.push(format!("{table} / {}: {mismatch}", case.name));
            }
            assert_serves(&running, &case.name).await;
        }
    }
    println!(
        "hostile suite: {count} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= 80, "{count} cases");
}

// ---------------------------------------------------------------------------------------------
// Slow clients and connection hygiene. Each test holds `SERIAL` so that the process's RSS and
// descriptor counts belong to one test at a time, and the timings to an unloaded server.

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The hostile configuration with short timeouts: a 1 s body read, a 2 s request head, 3 s of
/// keep-alive idleness.
fn slow_config() -> config::Config {
    let mut config = hostile_config();
    config.guard.read_timeout_secs = 1;
    config.server.header_read_timeout_secs = 2;
    config.server.idle_timeout_secs = 3;
    config
}

/// Waits until the server closes `stream`, failing if it sends anything first; how long that
/// took from `since`.
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut buffer = [0; 64];
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer));
    match read.await.expect("closed within 20 s") {
        Ok(0) => {}
        Ok(n) => panic!(
            "got {:?} instead of a close",
            String::from_utf8_lossy(&buffer[..n])
        ),
        // A reset is a close too (the server had unread bytes of ours).
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    since.elapsed()
}

fn envelope_of(response: &RawResponse) -> Value {
    let json = response.json().expect("a JSON envelope");
    assert_eq!(
        json["request_id"].as_str(),
        response.header("x-request-id"),
        "the envelope's request id is the response's"
    );
    assert!(json["request_id"].is_string(), "{json}");
    json
}

/// The guard timed the body only on the metered endpoints; a passthrough route's body was read
/// by the upstream client without a limit, so a client that never finished it held the request
/// for good.
#[tokio::test]
async fn a_trickled_body_gets_a_408_envelope_on_every_forwarded_path() {
    let _serial = SERIAL.lock().await;
    let running = start(&slow_config()).await;
    let trickle = |path: &'static str| {
        let addr = running.server.addr();
        async move {
            let request = post(path, chat_body("model", Some(json!("gpt-5.4")))).bytes();
            let body_starts = request.len() - chat_body("model", Some(json!("gpt-5.4"))).len();
            let (head, body) = request.split_at(body_starts);
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(head).await.unwrap();
            let started = Instant::now();
            let (mut reader, mut writer) = stream.split();
            // A byte every 200 ms: the body would take half a minute.
            let trickle = async {
                for byte in body {
                    if writer.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            let response = tokio::select! {
                () = trickle => panic!("the whole body went through"),
                response = read_response(&mut reader, false) => response.unwrap(),
            };
            (path, response, started.elapsed())
        }
    };
    let (chat, passthrough) = tokio::join!(trickle("/v1/chat/completions"), trickle("/v1/uploads"));
    for (path, response, elapsed) in [chat, passthrough] {
        assert_eq!(response.status, 408, "{path}: {:?}", response.body);
        assert_eq!(
            envelope_of(&response)["error"]["type"],
            "request_timeout",
            "{path}"
        );
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(2)).contains(&elapsed),
            "{path}: {elapsed:?}"
        );
        println!(
            "trickled body on {path}: 408 after {:.2} s",
            elapsed.as_secs_f64()
        );
    }
    assert!(
        running.upstream.calls().is_empty(),
        "nothing reached the provider"
    );
    assert_serves(&running, "trickled bodies").await;
}

/// With no header timeout, a client that sent nothing, or a head byte by byte, held its
/// connection (and a descriptor) for as long as it liked.
#[tokio::test]
async fn silent_and_slowloris_connections_are_closed_after_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let running = start(&slow_config()).await;
    let addr = running.server.addr();
    let silent = async {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        closed_after(&mut stream, started).await
    };
    let slowloris = async {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = chat(chat_body("model", Some(json!("gpt-5.4")))).bytes();
        let (mut reader, mut writer) = stream.split();
        let mut sent = 0;
        let trickle = async {
            // One header byte a second, for as long as the server reads them.
            for byte in &head {
                if writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let mut buffer = [0; 64];
        tokio::select! {
            () = trickle => panic!("the whole head went through"),
            read = reader.read(&mut buffer) => assert!(matches!(read, Ok(0) | Err(_)), "an answer: {read:?}"),
        }
        (started.elapsed(), sent)
    };
    // A keep-alive connection's next head is timed from its first byte.
    let keep_alive = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = req("GET", "/v1/models").bytes();
        stream.write_all(&request).await.unwrap();
        assert_eq!(read_response(&mut stream, false).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        stream.write_all(&request[..5]).await.unwrap();
        closed_after(&mut stream, started).await
    };
    let (silent, (slowloris, bytes), keep_alive) = tokio::join!(silent, slowloris, keep_alive);
    println!(
        "header timeout 2 s: silent connection closed after {:.2} s, slowloris after {:.2} s ({bytes} bytes sent), a keep-alive connection's slow next head after {:.2} s",
        silent.as_secs_f64(),
        slowloris.as_secs_f64(),
        keep_alive.as_secs_f64()
    );
    for (name, elapsed) in [
        ("silent", silent),
        ("slowloris", slowloris),
        ("keep-alive", keep_alive),
    ] {
        assert!(
            (Duration::from_millis(1_900)..Duration::from_millis(3_500)).contains(&elapsed),
            "{name}: {elapsed:?}"
        );
    }
    assert_serves(&running, "slow heads").await;
}

/// How many descriptors the process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The soft limit on open descriptors, from `/proc/self/limits` (no unsafe `getrlimit`).
fn fd_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace()
        .nth(3)
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(usize::MAX)
}

/// The RSS an idle connection may add: about 20 KiB were measured (hyper's buffers, the task,
/// the connection's clock, both sockets' runtime state); twice that leaves the allocator room.
const RSS_PER_IDLE_CONNECTION_KIB: u64 = 40;

#[tokio::test]
async fn a_thousand_idle_connections_cost_little_and_are_closed_after_the_idle_timeout() {
    let _serial = SERIAL.lock().await;
    let running = start(&slow_config()).await;
    let addr = running.server.addr();
    // Two descriptors per connection (ours and the server's), and some for the rest.
    let wanted = 1_000;
    let count = wanted.min(fd_limit().saturating_sub(open_fds() + 100) / 2);
    if count < wanted {
        println!("RLIMIT_NOFILE allows {count} idle connections, not {wanted}: measuring those");
    }
    assert!(count >= 100, "too few descriptors to measure anything");
    let request = req("GET", "/v1/models").bytes();
    // Warm up (first requests allocate the stack's caches), then measure.
    for _ in 0..20 {
        raw_exchange(addr, &request).await.unwrap();
    }
    let (fds_before, rss_before) = (open_fds(), rss_kib());
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        assert_eq!(read_response(&mut stream, false).await.unwrap().status, 200);
        idle.push((stream, Instant::now()));
    }
    let (fds_open, rss_open) = (open_fds(), rss_kib());
    let rss_delta = rss_open.saturating_sub(rss_before);
    println!(
        "{count} idle connections: {} more descriptors, RSS {} KiB -> {} KiB (+{rss_delta} KiB, {:.1} KiB each)",
        fds_open - fds_before,
        rss_before,
        rss_open,
        rss_delta as f64 / count as f64
    );
    // Both ends of every connection (give or take a descriptor the runtime closed meanwhile).
    assert!(
        fds_open - fds_before >= 2 * count - 10,
        "{fds_open} open, {fds_before} before"
    );
    assert!(
        rss_delta <= RSS_PER_IDLE_CONNECTION_KIB * count as u64,
        "+{rss_delta} KiB for {count} idle connections"
    );
    // The server closes each one 3 s after its response.
    let mut slowest = Duration::ZERO;
    for (stream, idle_since) in &mut idle {
        let after = closed_after(stream, *idle_since).await;
        assert!(
            after >= Duration::from_millis(2_900),
            "closed early: {after:?}"
        );
        slowest = slowest.max(after);
    }
    let fds_closed = open_fds();
    println!(
        "idle timeout 3 s: all {count} closed by the server within {:.2} s of their response; the server's {} descriptors released",
        slowest.as_secs_f64(),
        fds_open - fds_closed
    );
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
    // Only our ends are left, until we drop them.
    assert!(
        fds_closed <= fds_before + count + 10,
        "{fds_closed} open, {fds_before} before"
    );
    drop(idle);
    assert!(open_fds() <= fds_before + 10);
    assert_serves(&running, "a thousand idle connections").await;
}

/// Connections had no cap: a client could open them until the descriptors ran out and the
/// accept loop stalled.
#[tokio::test]
async fn a_connection_over_the_cap_gets_a_503_envelope_and_is_closed() {
    let _serial = SERIAL.lock().await;
    let mut config = slow_config();
    config.server.max_connections = 2;
    config.server.header_read_timeout_secs = 10;
    let running = start(&config).await;
    let addr = running.server.addr();
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // Let the server accept both before the third knocks.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request = chat(chat_body("model", Some(json!("gpt-5.4")))).bytes();
    let refused = raw_exchange(addr, &request).await.unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(
        envelope_of(&refused)["error"]["type"],
        "service_unavailable"
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("x-should-retry"), Some("true"));
    assert!(refused.closed, "the refused connection is closed");
    assert!(running.upstream.calls().is_empty());
    // A freed slot serves again.
    drop(first);
    let mut served = None;
    for _ in 0..50 {
        let response = raw_exchange(addr, &request).await.unwrap();
        if response.status == 200 {
            served = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served.is_some(), "a slot was freed");
}

/// A client that shut down its side after its request (`shutdown(SHUT_WR)`, as `nc -N` does)
/// got no answer: hyper took the end of its input for the end of the connection.
#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let _serial = SERIAL.lock().await;
    let running = start(&hostile_config()).await;
    for request in [
        chat(chat_body("model", Some(json!("gpt-5.4")))),
        chat(chat_body("model", Some(json!("gpt-4o")))),
    ] {
        let mut stream = TcpStream::connect(running.server.addr()).await.unwrap();
        stream.write_all(&request.bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let response = read_response(&mut stream, false).await.unwrap();
        match response.status {
            200 => assert_eq!(response.json().unwrap()["model"], "gpt-5.4"),
            status => {
                assert_eq!(status, 410);
                assert_eq!(envelope_of(&response)["error"]["type"], "model_retired");
            }
        }
    }
    assert_eq!(running.upstream.calls().len(), 1);
}

/// At shutdown, an idle keep-alive connection and a connection halfway through its head held
/// the server for the whole grace; a request in flight is let finish, but only within it.
#[tokio::test]
async fn graceful_shutdown_closes_idle_and_pending_heads_at_once_and_bounds_requests_in_flight() {
    let _serial = SERIAL.lock().await;
    let mut config = hostile_config();
    config.server.shutdown_grace_secs = 2;
    let running = start(&config).await;
    let addr = running.server.addr();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(&req("GET", "/v1/models").bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle, false).await.unwrap().status, 200);
    let mut half_head = TcpStream::connect(addr).await.unwrap();
    half_head
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gat")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let in_flight = |delay_ms: u64| {
        let request = chat(chat_body("model", Some(json!("gpt-5.4"))))
            .header("x-mock", format!("first-byte-delay-ms={delay_ms}"))
            .bytes();
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&request).await.unwrap();
            read_response(&mut stream, false).await
        })
    };
    let finishes = in_flight(500);
    let outlives_the_grace = in_flight(10_000);
    // Both requests reach the upstream before the shutdown starts.
    while running.upstream.calls().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let shutdown = tokio::spawn(running.server.shutdown());
    for (name, stream) in [
        ("idle", &mut idle),
        ("half a head", &mut half_head),
        ("silent", &mut silent),
    ] {
        let after = closed_after(stream, started).await;
        println!(
            "shutdown: the {name} connection closed after {:.3} s",
            after.as_secs_f64()
        );
        assert!(after < Duration::from_millis(500), "{name}: {after:?}");
    }
    let finished = finishes.await.unwrap().unwrap();
    assert_eq!(finished.status, 200, "the short request finished");
    let ended = shutdown.await.unwrap();
    let took = started.elapsed();
    println!(
        "shutdown with a 2 s grace took {:.2} s and cut off {} request",
        took.as_secs_f64(),
        ended.cut_off
    );
    assert_eq!(ended.cut_off, 1);
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(3)).contains(&took),
        "{took:?}"
    );
    assert!(
        outlives_the_grace.await.unwrap().is_err(),
        "cut off without an answer"
    );
}

/// The sample's `[server]` table is the library's defaults, and a limit of 0 (which would
/// refuse every client) does not start.
#[test]
fn the_server_table_holds_the_defaults_and_refuses_zero() {
    let config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    assert_eq!(
        config.server.limits().unwrap(),
        tollgate_testkit::ConnectionLimits::default()
    );
    for key in [
        "header_read_timeout_secs = 10",
        "idle_timeout_secs = 60",
        "max_connections = 4096",
    ] {
        let name = key.split(' ').next().unwrap();
        let zero = config::DEFAULT_CONFIG.replace(key, &format!("{name} = 0"));
        let error = config::Config::parse(&zero)
            .unwrap()
            .server
            .limits()
            .unwrap_err();
        assert_eq!(error, format!("server.{name} must be at least 1"));
    }
}
