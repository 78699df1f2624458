//! A real OpenAI client understands our error envelope: async-openai's own error types get
//! message, type, param and code back, over TCP and from the raw bodies.

use std::convert::Infallible;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::{OpenAIError, WrappedError};
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use http::Request;
use tollgate::core::{Body, BodyLimit, ErrorKind, GatewayError, buffer_chat_request};
use tollgate::error::ErrorEnvelopeLayer;
use tollgate_testkit::TestServer;
use tower::ServiceBuilder;

/// The error a kind is answered with in these tests: every field set.
fn error_for(kind: ErrorKind) -> GatewayError {
    GatewayError::new(kind, format!("Something about {}.", kind.type_str()))
        .param("model")
        .code(format!("code_{}", kind.type_str()))
        .detail("model", "gpt-5.4")
}

#[test]
fn async_openai_error_type_parses_every_envelope() {
    for kind in ErrorKind::ALL {
        let body = error_for(kind).to_json(Some("req_1"));
        let wrapped: WrappedError = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            wrapped.error.message,
            format!("Something about {}.", kind.type_str())
        );
        assert_eq!(wrapped.error.r#type.as_deref(), Some(kind.type_str()));
        assert_eq!(wrapped.error.param.as_deref(), Some("model"));
        assert_eq!(
            wrapped.error.code,
            Some(format!("code_{}", kind.type_str()))
        );
    }
    // Without param and code (null in the envelope).
    let body = GatewayError::new(ErrorKind::Auth, "Missing key.").to_json(None);
    let wrapped: WrappedError = serde_json::from_slice(&body).unwrap();
    assert_eq!(wrapped.error.param, None);
    assert_eq!(wrapped.error.code, None);
}

#[tokio::test]
async fn async_openai_client_sees_status_and_fields_over_tcp() {
    // The model names the kind to answer with.
    let gateway = ServiceBuilder::new()
        .layer(ErrorEnvelopeLayer::new())
        .service_fn(|request: Request<Body>| async move {
            let (_request, chat) = buffer_chat_request(request, BodyLimit::default())
                .await
                .unwrap();
            let chat = chat.unwrap();
            let kind = ErrorKind::ALL
                .into_iter()
                .find(|kind| Some(kind.type_str()) == chat.model())
                .unwrap();
            Ok::<_, Infallible>(error_for(kind).into_response())
        });
    let server = TestServer::start(gateway).await;
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", server.url()))
            .with_api_key("sk-test"),
    );
    for kind in ErrorKind::ALL {
        let request = CreateChatCompletionRequestArgs::default()
            .model(kind.type_str())
            .messages([ChatCompletionRequestUserMessage::from("hi").into()])
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let error = client.chat().create(request).await.unwrap_err();
        eprintln!("{kind:?} {:?}", started.elapsed());
        let OpenAIError::ApiError(response) = error else {
            panic!("{kind:?}: not an API error: {error}");
        };
        assert_eq!(
            response.status_code.as_u16(),
            kind.status().as_u16(),
            "{kind:?}"
        );
        // async-openai does not parse 5xx bodies (OpenAI does not promise JSON there): it hands
        // over the raw body as the message, which is our envelope and parses with its type.
        let api_error = if kind.status().is_server_error() {
            assert_eq!(response.api_error.r#type, None);
            serde_json::from_str::<WrappedError>(&response.api_error.message)
                .unwrap()
                .error
        } else {
            response.api_error
        };
        assert_eq!(api_error.r#type.as_deref(), Some(kind.type_str()));
        assert_eq!(
            api_error.message,
            format!("Something about {}.", kind.type_str())
        );
        assert_eq!(api_error.param.as_deref(), Some("model"));
        assert_eq!(api_error.code, Some(format!("code_{}", kind.type_str())));
    }
}
