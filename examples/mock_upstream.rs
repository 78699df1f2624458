//! `cargo run --example mock_upstream -- [--chunks N] [--chunk-delay-ms MS]`: the testkit's
//! OpenAI-compatible mock upstream as a process of its own, for load tests (`scripts/loadtest`)
//! and for pointing a gateway at (`--upstream URL`). It answers at once (a stream's chunks
//! `MS` apart, none by default), keeps nothing per request, and prints its URL.

use std::time::Duration;

use tollgate_testkit::MockUpstream;

#[tokio::main]
async fn main() {
    let mut builder = MockUpstream::builder().record_calls(false);
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let value = words.next().and_then(|value| value.parse::<u64>().ok());
        builder = match (word.as_str(), value) {
            ("--chunks", Some(chunks)) => builder.chunks(chunks as usize),
            ("--chunk-delay-ms", Some(ms)) => builder.chunk_delay(Duration::from_millis(ms)),
            _ => {
                eprintln!("usage: mock_upstream [--chunks N] [--chunk-delay-ms MS]");
                std::process::exit(2);
            }
        };
    }
    let upstream = builder.start().await;
    println!("mock upstream listening on {}", upstream.url());
    let _ = tokio::signal::ctrl_c().await;
    drop(upstream);
}
