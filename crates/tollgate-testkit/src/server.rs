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
use tollgate_core::ChatRequest;

use crate::answer::{Answer, Rejection};
use crate::behavior::{Behavior, Fault};
use crate::record::{Call, HangUpGuard, Outcome, Progress};

pub(crate) type MockBody = BoxBody<Bytes, std::io::Error>;

/// The fixed `created` timestamp, so recorded responses are reproducible.
pub(crate) const CREATED: u64 = 1_714_000_000;

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
    pub(crate) record_calls: bool,
    pub(crate) next_id: AtomicU64,
    /// Write-locked while a [`HeldResponses`](crate::HeldResponses) is alive: every response
    /// waits for a read lock before its head.
    pub(crate) hold: Arc<tokio::sync::RwLock<()>>,
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
    // Every endpoint's body is a JSON object with a `model`; the chat view reads the fields
    // they share (`model`, `stream`, `stream_options`, `max_tokens`).
    let request = ChatRequest::parse(body.clone()).ok();
    let progress = Progress::new();
    let call = Call {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        body,
        model: request
            .as_ref()
            .and_then(|request| request.model().map(str::to_owned)),
        progress: progress.clone(),
    };
    if state.record_calls
        && let Ok(mut calls) = state.calls.lock()
    {
        calls.push(call.clone());
    }
    let guard = HangUpGuard(progress.clone());
    // Recorded first: a test sees the call arrive while its response is held.
    drop(state.hold.read().await);

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
            let message = match status {
                // As OpenAI's does, the message names the key presented: a gateway must not
                // pass it on.
                StatusCode::UNAUTHORIZED => format!(
                    "Incorrect API key provided: {}.",
                    parts
                        .headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                ),
                _ => format!("Injected fault: the mock upstream answered {status}."),
            };
            // OpenAI answers a model it does not serve with a 404 whose code says so.
            let code = (status == StatusCode::NOT_FOUND).then_some("model_not_found");
            return Ok(coded_error_response(status, &message, code, retry_after));
        }
        Some(Fault::AbortAfterChunks(_) | Fault::ErrorAfterChunks(_)) | None => {}
    }

    let path = parts.uri.path();
    let answer = match (&parts.method, path, &request) {
        (&Method::GET, "/v1/models", _) => Ok(state.model_list()),
        (&Method::POST, "/v1/chat/completions", Some(chat)) => {
            Ok(crate::chat::answer(&state, chat, &behavior))
        }
        (&Method::POST, "/v1/responses", Some(request)) => {
            crate::responses::answer(&state, request, &behavior)
        }
        (&Method::POST, "/v1/completions", Some(request)) => {
            crate::completions::answer(&state, request, &behavior)
        }
        (&Method::POST, "/v1/embeddings", Some(request)) => crate::embeddings::answer(request),
        (
            &Method::POST,
            "/v1/chat/completions" | "/v1/responses" | "/v1/completions" | "/v1/embeddings",
            None,
        ) => Err(Rejection::bad_request(
            "We could not parse the JSON body of your request.",
        )),
        (method, path, _) => Err(Rejection {
            status: StatusCode::NOT_FOUND,
            message: format!("Invalid URL ({method} {path})"),
        }),
    };
    match answer {
        Ok(Answer::Stream(plan)) => Ok(plan.into_response(guard)),
        Ok(Answer::Json(body)) => {
            progress.finish(Outcome::Completed);
            Ok(json_response(body))
        }
        Err(rejection) => {
            progress.finish(Outcome::Completed);
            Ok(error_response(rejection.status, &rejection.message, None))
        }
    }
}

impl State {
    /// A number for the next answer's ids, unique for the mock's lifetime.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn model_list(&self) -> Answer {
        let data: Vec<_> = self
            .models
            .iter()
            .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "tollgate-mock"}))
            .collect();
        Answer::Json(json!({"object": "list", "data": data}).to_string().into())
    }

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
