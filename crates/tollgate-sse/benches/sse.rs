//! Parser throughput against a bare `memchr` scan of the same bytes (the floor), and the
//! per-chunk cost of the passthrough body.

use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http_body::Body;
use tollgate_sse::{ChatStreamSummary, SseBody, SseObserver, SseParser};

#[path = "../tests/frames/mod.rs"]
mod frames;
use frames::Frames;

/// A realistic OpenAI stream: one small chunk event per token, then usage and [DONE].
fn openai_stream(tokens: usize) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(tokens + 2);
    for n in 0..tokens {
        frames.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1714000000,\"model\":\"gpt-5.4\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{n} \"}},\"finish_reason\":null}}]}}\n\n"
        )));
    }
    frames.push(Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1000,\"total_tokens\":1009}}\n\n",
    ));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

fn drain<B: Body<Data = Bytes>>(body: B) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut body = std::pin::pin!(body);
    let mut bytes = 0;
    while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
        bytes += frame.into_data().map_or(0, |data| data.len());
    }
    bytes
}

fn parser(c: &mut Criterion) {
    let stream: Vec<u8> = openai_stream(5_000).concat();
    let chunks: Vec<&[u8]> = stream.chunks(1024).collect();
    let mut group = c.benchmark_group("sse_parse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("memchr line scan (floor)", |b| {
        b.iter(|| {
            let mut lines = 0;
            for chunk in &chunks {
                lines += memchr::memchr2_iter(b'\n', b'\r', chunk).count();
            }
            black_box(lines)
        })
    });
    group.bench_function("SseParser, 1 KiB chunks", |b| {
        b.iter(|| {
            let mut parser = SseParser::new();
            let mut events = 0;
            for chunk in &chunks {
                parser.feed(chunk, |event| {
                    black_box(event.data);
                    events += 1;
                });
            }
            black_box(events)
        })
    });
    group.bench_function("SseParser + ChatStreamSummary (JSON per event)", |b| {
        b.iter(|| {
            let mut parser = SseParser::new();
            let mut summary = ChatStreamSummary::default();
            for chunk in &chunks {
                parser.feed(chunk, |event| summary.observe(event));
            }
            black_box(summary.usage)
        })
    });
    group.finish();
}

fn passthrough(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let frames = openai_stream(1_000);
    let count = frames.len() as u64;
    let source = || Frames(frames.iter().cloned().collect());
    let mut group = c.benchmark_group("sse_passthrough_per_stream_of_1002_chunks");
    group.throughput(Throughput::Elements(count));
    group.bench_function("bare body", |b| {
        b.iter_batched(source, |body| black_box(drain(body)), BatchSize::SmallInput)
    });
    group.bench_function("SseBody, no observer", |b| {
        b.iter_batched(
            || SseBody::stream(source(), Vec::new(), None, false, None),
            |body| black_box(drain(body)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("SseBody, keep-alive timer", |b| {
        b.iter_batched(
            || {
                SseBody::stream(
                    source(),
                    Vec::new(),
                    Some(Duration::from_secs(15)),
                    false,
                    None,
                )
            },
            |body| black_box(drain(body)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("SseBody, usage observer", |b| {
        b.iter_batched(
            || {
                let observers: Vec<Box<dyn SseObserver>> =
                    vec![Box::new(ChatStreamSummary::default())];
                SseBody::stream(source(), observers, None, false, None)
            },
            |body| black_box(drain(body)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("SseBody, usage stripped", |b| {
        b.iter_batched(
            || SseBody::stream(source(), Vec::new(), None, true, None),
            |body| black_box(drain(body)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, parser, passthrough);
criterion_main!(benches);
