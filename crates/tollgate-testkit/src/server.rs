//! The accept loop and the request handler.

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tollgate_core::{ChatRequest, Usage};

use crate::behavior::{Behavior, Fault};
use crate::record::{Call, HangUpGuard, Outcome, Progress};
use crate::response::{Completion, MockStream};

pub(crate) type MockBody = BoxBody<Bytes, std::io::Error>;

/// A model's behavior, and for how many more calls it holds (`None`: for every call).
#[derive(Debug)]
pub(crate) struct ModelRule {
    pub(crate) behavior: Behavior,
    pub(crate) remaining: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) defaults: Behavior,
    pub(crate) reply: String,
    pub(crate) models: Vec<String>,
    pub(crate) rules: Mutex<HashMap<String, ModelRule>>,
    pub(crate) calls: Mutex<Vec<Call>>,
    pub(crate) next_id: AtomicU64,
}

pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            stream = crate::accept(&listener) => {
                connections.spawn(connection(stream, state.clone()));
            }
            // Reap finished connections so the set does not grow with every test request.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, state: Arc<State>) {
    // A second handle on the socket, to reset it (linger 0) once hyper has let go of it.
    let socket = stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(socket2::Socket::from);
    let reset = Arc::new(Notify::new());
    let service = {
        let reset = reset.clone();
        hyper::service::service_fn(move |request| handle(request, state.clone(), reset.clone()))
    };
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = reset.notified() => {
            if let Some(socket) = &socket {
                let _ = socket.set_linger(Some(Duration::ZERO));
            }
            // Dropping the connection closes hyper's handle; `socket` closes last, with an RST.
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
    reset: Arc<Notify>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let chat = ChatRequest::parse(body.clone()).ok();
    let progress = Progress::new();
    let call = Call {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        body,
        model: chat
            .as_ref()
            .and_then(|chat| chat.model().map(str::to_owned)),
        progress: progress.clone(),
    };
    if let Ok(mut calls) = state.calls.lock() {
        calls.push(call.clone());
    }
    let guard = HangUpGuard(progress.clone());

    let header = parts.headers.get("x-mock").and_then(|v| v.to_str().ok());
    let requested = match header.map(Behavior::parse).transpose() {
        Ok(requested) => requested.unwrap_or_default(),
        Err(error) => {
            progress.finish(Outcome::Completed);
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                &format!("x-mock: {error}"),
                None,
            ));
        }
    };
    let behavior = requested
        .or(&state.model_behavior(call.model.as_deref()))
        .or(&state.defaults);

    if let Some(delay) = behavior.first_byte_delay {
        tokio::time::sleep(delay).await;
    }
    match behavior.fault {
        Some(Fault::ResetBeforeHead) => {
            progress.finish(Outcome::Faulted);
            reset.notify_one();
            std::future::pending::<()>().await;
        }
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            progress.finish(Outcome::Completed);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = format!("Injected fault: the mock upstream answered {status}.");
            // OpenAI answers a model it does not serve with a 404 whose code says so.
            let code = (status == StatusCode::NOT_FOUND).then_some("model_not_found");
            return Ok(coded_error_response(status, &message, code, retry_after));
        }
        Some(Fault::AbortAfterChunks(_)) | None => {}
    }

    let response = match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/v1/models") => {
            let data: Vec<_> = state
                .models
                .iter()
                .map(|id| json!({"id": id, "object": "model", "created": 1_714_000_000u64, "owned_by": "tollgate-mock"}))
                .collect();
            json_response(json!({"object": "list", "data": data}).to_string().into())
        }
        (&Method::POST, "/v1/chat/completions") => match chat {
            Some(chat) => return Ok(completion(&state, &chat, &behavior, guard)),
            None => error_response(
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request.",
                None,
            ),
        },
        (method, path) => error_response(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({method} {path})"),
            None,
        ),
    };
    progress.finish(Outcome::Completed);
    Ok(response)
}

impl State {
    /// The behavior configured for `model`, counting down a limited rule.
    fn model_behavior(&self, model: Option<&str>) -> Behavior {
        let (Some(model), Ok(mut rules)) = (model, self.rules.lock()) else {
            return Behavior::default();
        };
        let Some(rule) = rules.get_mut(model) else {
            return Behavior::default();
        };
        match &mut rule.remaining {
            Some(0) => Behavior::default(),
            Some(remaining) => {
                *remaining -= 1;
                rule.behavior.clone()
            }
            None => rule.behavior.clone(),
        }
    }
}

fn completion(
    state: &State,
    chat: &ChatRequest,
    behavior: &Behavior,
    guard: HangUpGuard,
) -> Response<MockBody> {
    let reply_words: Vec<&str> = state.reply.split_inclusive(' ').collect();
    let wanted = behavior.chunks.unwrap_or(reply_words.len());
    let allowed = chat
        .max_completion_tokens()
        .map_or(wanted, |max| wanted.min(max as usize));
    let words: Vec<String> = reply_words
        .iter()
        .cycle()
        .take(allowed)
        .map(|word| (*word).to_owned())
        .collect();
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let completion = Completion {
        id: format!("chatcmpl-mock-{id}"),
        model: chat.model().unwrap_or("mock").to_owned(),
        finish_reason: if allowed < wanted { "length" } else { "stop" },
        usage: Usage::new(prompt_tokens(chat), words.len() as u64),
        words,
        include_usage: chat.include_usage(),
    };
    if !chat.stream() {
        guard.0.finish(Outcome::Completed);
        return json_response(completion.json());
    }
    let frames = completion.sse_frames(behavior.chunk_delay.unwrap_or_default());
    // The role chunk comes first, so "after N content chunks" is frame N + 1.
    let abort = match behavior.fault {
        Some(Fault::AbortAfterChunks(chunks)) => Some(chunks + 1),
        _ => None,
    };
    let stream = MockStream::new(frames, abort, guard);
    let mut response = Response::new(stream.boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// The mock's token count: a quarter of the message text bytes, rounded up, plus 3 per
/// message (OpenAI's per-message overhead). Deterministic, so tests can predict it.
pub fn prompt_tokens(chat: &ChatRequest) -> u64 {
    (chat.prompt_bytes().div_ceil(4) + 3 * chat.message_count()) as u64
}

fn json_response(body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(
    status: StatusCode,
    message: &str,
    retry_after: Option<u64>,
) -> Response<MockBody> {
    coded_error_response(status, message, None, retry_after)
}

fn coded_error_response(
    status: StatusCode,
    message: &str,
    code: Option<&str>,
    retry_after: Option<u64>,
) -> Response<MockBody> {
    let kind = match status.as_u16() {
        400 | 404 | 413 => "invalid_request_error",
        401 => "authentication_error",
        429 => "rate_limit_exceeded",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut response = json_response(body.to_string().into());
    *response.status_mut() = status;
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn full(bytes: Bytes) -> MockBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}
