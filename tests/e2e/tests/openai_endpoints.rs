//! Every metered endpoint through the demo gateway's stack over TCP, with a real OpenAI client
//! (async-openai) against the testkit mock: the Responses API (JSON and stream), embeddings,
//! legacy completions and chat completions are billed exactly their usage at the catalog's
//! prices (prompt tokens the mock reports as cached at the cached price, where the catalog sets
//! one), and each refuses alike: 402 without credit, 403 for a key restricted to another
//! model, 410 for a retired model.

// The example's own configuration and stack; the tests use most, not all, of what they expose.
#[allow(dead_code)]
#[path = "../../../examples/gateway/backends.rs"]
mod backends;
#[allow(dead_code)]
#[path = "../../../examples/gateway/config.rs"]
mod config;
#[allow(dead_code)]
#[path = "../../../examples/gateway/stack.rs"]
mod stack;

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use async_openai::types::completions::CreateCompletionRequestArgs;
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use async_openai::types::responses::{CreateResponseArgs, ResponseStreamEvent};
use futures_util::StreamExt;
use tollgate::balance::Ledger;
use tollgate::core::Prices;
use tollgate::models::{ModelEntry, Status};
use tollgate_testkit::{Behavior, Fault, MockUpstream, TestServer};

struct Running {
    server: TestServer,
    handles: stack::Handles,
    /// The demo configuration's keys, by id.
    keys: Vec<(String, String)>,
}

/// The demo configuration with a retired model for every endpoint, over `upstream`.
async fn start(upstream: &MockUpstream) -> Running {
    let mut config = config::Config::parse(config::DEFAULT_CONFIG).unwrap();
    config.upstream.max_retries = 1;
    let models = &mut config.catalog.models;
    let gpt_4o = models.iter_mut().find(|m| m.id == "gpt-4o").unwrap();
    gpt_4o.endpoints = vec!["/v1/chat/completions".into(), "/v1/responses".into()];
    let retired = |id: &str, endpoint: &str, replacement: &str| ModelEntry {
        id: id.into(),
        context_window: 4096,
        max_output_tokens: 1,
        endpoints: vec![endpoint.into()],
        status: Status::Retired,
        retired_on: Some("2024-01-04".into()),
        replacement: Some(replacement.into()),
        ..ModelEntry::default()
    };
    models.push(retired(
        "text-embedding-ada-002",
        "/v1/embeddings",
        "text-embedding-3-small",
    ));
    models.push(retired(
        "text-davinci-003",
        "/v1/completions",
        "gpt-3.5-turbo-instruct",
    ));
    let keys = config
        .auth
        .keys
        .iter()
        .filter_map(|entry| Some((entry.id.clone(), entry.key.as_ref()?.expose().to_owned())))
        .collect();
    let (gateway, handles) = stack::build(&config, &upstream.url(), Some("sk-provider"))
        .await
        .unwrap();
    Running {
        server: TestServer::start(gateway).await,
        handles,
        keys,
    }
}

impl Running {
    /// A client with the demo configuration's key `id`: `key_demo` (credit, every model),
    /// `key_broke` (no credit), `key_mini` (gpt-5.4-mini only).
    fn client(&self, id: &str) -> Client<OpenAIConfig> {
        let (_, key) = self.keys.iter().find(|(key_id, _)| key_id == id).unwrap();
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(format!("{}/v1", self.server.url()))
                .with_api_key(key),
        )
    }

    async fn balance(&self) -> u64 {
        self.handles.ledger.balance("acct_demo").await.unwrap()
    }

    /// The balance once a settlement moved it from `before`: a stream settles as its body
    /// ends, a moment after the client read the last event.
    async fn settled(&self, before: u64) -> u64 {
        for _ in 0..100 {
            let balance = self.balance().await;
            if balance != before {
                return balance;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.balance().await
    }

    fn prices(&self, model: &str) -> Prices {
        self.handles
            .catalog
            .current()
            .get(model)
            .unwrap()
            .info
            .prices
    }
}

/// Usage as a client read it: prompt tokens, of which cached, and completion tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tokens {
    prompt: u64,
    cached: u64,
    completion: u64,
}

/// What usage costs, as issue 13 states it: uncached prompt tokens at the input price, cached
/// ones at the cached price (the input price when the catalog sets none), completion tokens at
/// the output price, in micro-units per million tokens, rounded up once.
fn cost(prices: Prices, tokens: Tokens) -> u64 {
    let cached_price = prices
        .cached_input_per_million_field()
        .unwrap_or(prices.input_per_million);
    ((tokens.prompt - tokens.cached) * prices.input_per_million
        + tokens.cached * cached_price
        + tokens.completion * prices.output_per_million)
        .div_ceil(1_000_000)
}

/// The metered endpoints, as a client calls them.
#[derive(Clone, Copy, Debug)]
enum Call {
    Responses,
    ResponsesStream,
    Embeddings,
    Completions,
    Chat,
}

impl Call {
    const ALL: [Call; 5] = [
        Call::Responses,
        Call::ResponsesStream,
        Call::Embeddings,
        Call::Completions,
        Call::Chat,
    ];

    /// The endpoint's model of the demo catalog, and its retired one.
    fn models(self) -> (&'static str, &'static str) {
        match self {
            Call::Responses | Call::ResponsesStream | Call::Chat => ("gpt-5.4", "gpt-4o"),
            Call::Embeddings => ("text-embedding-3-small", "text-embedding-ada-002"),
            Call::Completions => ("gpt-3.5-turbo-instruct", "text-davinci-003"),
        }
    }

    /// Sends "Say hello" to `model` and returns the usage the client read.
    async fn send(self, client: &Client<OpenAIConfig>, model: &str) -> Result<Tokens, OpenAIError> {
        let tokens = |prompt: u32, cached: u32, completion: u32| Tokens {
            prompt: prompt.into(),
            cached: cached.into(),
            completion: completion.into(),
        };
        match self {
            Call::Responses => {
                let request = CreateResponseArgs::default()
                    .model(model)
                    .input("Say hello")
                    .max_output_tokens(100u32)
                    .build()?;
                let usage = client.responses().create(request).await?.usage.unwrap();
                let cached = usage.input_tokens_details.cached_tokens;
                Ok(tokens(usage.input_tokens, cached, usage.output_tokens))
            }
            Call::ResponsesStream => {
                let request = CreateResponseArgs::default()
                    .model(model)
                    .input("Say hello")
                    .max_output_tokens(100u32)
                    .build()?;
                let mut stream = client.responses().create_stream(request).await?;
                let mut text = String::new();
                let mut usage = None;
                while let Some(event) = stream.next().await {
                    match event? {
                        ResponseStreamEvent::ResponseOutputTextDelta(delta) => {
                            text.push_str(&delta.delta);
                        }
                        ResponseStreamEvent::ResponseCompleted(completed) => {
                            usage = completed.response.usage;
                        }
                        _ => {}
                    }
                }
                assert_eq!(text, tollgate_testkit::DEFAULT_REPLY, "every delta arrived");
                let usage = usage.expect("response.completed carries the usage");
                let cached = usage.input_tokens_details.cached_tokens;
                Ok(tokens(usage.input_tokens, cached, usage.output_tokens))
            }
            Call::Embeddings => {
                let request = CreateEmbeddingRequestArgs::default()
                    .model(model)
                    .input("Say hello")
                    .build()?;
                let usage = client.embeddings().create(request).await?.usage;
                Ok(tokens(usage.prompt_tokens, 0, 0))
            }
            Call::Completions => {
                let request = CreateCompletionRequestArgs::default()
                    .model(model)
                    .prompt("Say hello")
                    .max_tokens(20u32)
                    .build()?;
                let usage = client.completions().create(request).await?.usage.unwrap();
                let cached = usage.prompt_tokens_details.and_then(|d| d.cached_tokens);
                Ok(tokens(
                    usage.prompt_tokens,
                    cached.unwrap_or(0),
                    usage.completion_tokens,
                ))
            }
            Call::Chat => {
                let request = CreateChatCompletionRequestArgs::default()
                    .model(model)
                    .max_tokens(100u32)
                    .messages([ChatCompletionRequestUserMessage::from("Say hello").into()])
                    .build()?;
                let usage = client.chat().create(request).await?.usage.unwrap();
                let cached = usage.prompt_tokens_details.and_then(|d| d.cached_tokens);
                Ok(tokens(
                    usage.prompt_tokens,
                    cached.unwrap_or(0),
                    usage.completion_tokens,
                ))
            }
        }
    }
}

/// The mock reports 4 cached prompt tokens for gpt-5.4 (whose catalog entry prices them) and
/// 2 for the legacy completions model (whose entry does not).
async fn caching_upstream() -> MockUpstream {
    let cached = |tokens| Behavior {
        cached_tokens: Some(tokens),
        ..Behavior::default()
    };
    MockUpstream::builder()
        .model_behavior("gpt-5.4", cached(4))
        .model_behavior("gpt-3.5-turbo-instruct", cached(2))
        .start()
        .await
}

#[tokio::test]
async fn every_endpoint_is_billed_exactly_its_usage_at_catalog_prices() {
    let upstream = caching_upstream().await;
    let running = start(&upstream).await;
    let client = running.client("key_demo");
    for call in Call::ALL {
        let (model, _) = call.models();
        let before = running.balance().await;
        let tokens = call.send(&client, model).await.unwrap();
        let after = running.settled(before).await;
        let prices = running.prices(model);
        assert_eq!(before - after, cost(prices, tokens), "{call:?}: {tokens:?}");
        match call {
            Call::Responses | Call::ResponsesStream | Call::Chat => {
                assert_eq!(tokens.cached, 4, "{call:?}");
                assert!(
                    before - after < prices.cost(tokens.prompt, tokens.completion),
                    "{call:?}: the cached tokens cost less"
                );
            }
            Call::Completions => {
                // Reported cached, but the catalog sets no cached price: the input price.
                assert_eq!(tokens.cached, 2);
                assert_eq!(
                    before - after,
                    prices.cost(tokens.prompt, tokens.completion)
                );
            }
            Call::Embeddings => assert_eq!(tokens.completion, 0),
        }
    }
}

#[tokio::test]
async fn every_endpoint_refuses_no_credit_another_model_and_a_retired_model() {
    let upstream = MockUpstream::start().await;
    let running = start(&upstream).await;
    let refusals = [
        ("key_broke", false, 402, "insufficient_balance"),
        ("key_mini", false, 403, "forbidden"),
        ("key_demo", true, 410, "model_retired"),
    ];
    for call in Call::ALL {
        let (model, retired_model) = call.models();
        for (key, retired, status, kind) in refusals {
            let model = if retired { retired_model } else { model };
            let error = call
                .send(&running.client(key), model)
                .await
                .expect_err(&format!("{call:?} {key} {model}"));
            let OpenAIError::ApiError(error) = error else {
                panic!("{call:?} {key} {model}: {error}")
            };
            assert_eq!(
                (
                    error.status_code.as_u16(),
                    error.api_error.r#type.as_deref()
                ),
                (status, Some(kind)),
                "{call:?} {key} {model}"
            );
        }
    }
    assert!(
        upstream.calls().is_empty(),
        "no refused request reached the provider"
    );
}

/// A Responses API stream the upstream cuts mid-way reaches the SDK as the Responses API's
/// `error` event, which it parses like any other event.
#[tokio::test]
async fn a_responses_stream_cut_mid_way_reaches_the_sdk_as_its_error_event() {
    let upstream = MockUpstream::builder()
        .model_behavior("gpt-5.4", Behavior::fault(Fault::AbortAfterChunks(2)))
        .start()
        .await;
    let running = start(&upstream).await;
    let before = running.balance().await;
    let request = CreateResponseArgs::default()
        .model("gpt-5.4")
        .input("Say hello")
        .build()
        .unwrap();
    let mut stream = running
        .client("key_demo")
        .responses()
        .create_stream(request)
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    let Some(ResponseStreamEvent::ResponseError(error)) = events.last() else {
        panic!("the stream did not end with an error event: {events:?}")
    };
    assert_eq!(error.code.as_deref(), Some("provider_error"));
    assert_eq!(error.sequence_number, 6, "after six events");
    assert!(error.message.contains("incomplete"), "{}", error.message);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        running.balance().await,
        before,
        "a failed stream is not charged"
    );
}
