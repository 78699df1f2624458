//! `SsePassthroughLayer` alone, in front of the testkit mock: the stream is forwarded as it
//! arrives and an observer sees its usage.
//! `cargo run --example sse`

use std::sync::{Arc, Mutex};

use http::Request;
use http_body_util::BodyExt;
use tollgate::core::Body;
use tollgate::sse::{
    ChatStreamSummary, Event, SseObserver, SseObservers, SsePassthroughLayer, StreamEnd,
};
use tollgate_testkit::{Forward, MockUpstream};
use tower::{ServiceBuilder, ServiceExt};

#[derive(Clone, Default)]
struct Usage(Arc<Mutex<ChatStreamSummary>>);

impl SseObserver for Usage {
    fn on_event(&mut self, event: &Event<'_>) {
        self.0.lock().unwrap().observe(event);
    }
    fn on_end(&mut self, end: StreamEnd) {
        println!(
            "stream ended ({end:?}), usage {:?}",
            self.0.lock().unwrap().usage
        );
    }
}

#[tokio::main]
async fn main() {
    let upstream = MockUpstream::start().await;
    let seen = Usage::default();
    let register = {
        let seen = seen.clone();
        move |request: Request<Body>| {
            if let Some(observers) = request.extensions().get::<SseObservers>() {
                observers.register(seen.clone());
            }
            request
        }
    };
    let service = ServiceBuilder::new()
        .layer(SsePassthroughLayer::new().inject_usage(true))
        .map_request(register)
        .service(Forward::to(&upstream.url()));
    let body = r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"Hi"}],"stream":true}"#;
    let request = Request::post("/v1/chat/completions")
        .body(Body::from(body))
        .unwrap();
    let mut stream = service.oneshot(request).await.unwrap().into_body();
    while let Some(frame) = stream.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            print!("{}", String::from_utf8_lossy(&data));
        }
    }
}
