//! `cargo run --release --example stream_probe -- --url URL [--key KEY] ...`: the streaming
//! client of `scripts/loadtest`, over one hyper connection per stream.
//!
//! - `--streams N [--connections C]`: N streams one after another on each of C connections
//!   (1 by default); prints the time from sending each request to its first body chunk (time
//!   to first byte) and the gaps between chunks, p50 and p99 in microseconds.
//! - `--open N --pid PID`: N streams at once; once every one has its first chunk, prints the
//!   resident memory of process PID (the server under test), then lets them go.
//! - `--paired URL2 --streams N [--connections C]`: the same requests to `--url` and to URL2
//!   in turn, one at a time, on C pairs of connections (one to each server), N pairs each, the
//!   first of each pair alternating; prints each side's time to first byte and time to the end
//!   of the body, p50 and p99, with `a_` (`--url`) and `b_` (URL2) prefixes. Both servers meet
//!   the same moments of the machine, which back-to-back runs on a noisy VM do not. The first
//!   `--warm-up W` pairs of each connection pair (default 20) are not measured.
//!
//! `--body json` sends the 1 KB non-streaming chat body of the load script instead of the short
//! streaming one. `--mock BEHAVIOR` sends an `x-mock` header (the testkit mock's per-request
//! pacing, such as `chunks=64; chunk-delay-ms=20`). Output is one line of `name=value` words
//! after `PROBE`, for the script to read.

use std::time::{Duration, Instant};

use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const STREAM_BODY: &str =
    r#"{"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

struct Args {
    url: http::Uri,
    paired: Option<http::Uri>,
    template: Template,
    streams: usize,
    warm_up: usize,
    connections: usize,
    open: usize,
    pid: Option<u32>,
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("stream_probe: {error}");
            eprintln!(
                "usage: stream_probe --url URL [--key KEY] [--mock BEHAVIOR] \
                 [--body json|stream] [--paired URL2 [--warm-up W]] \
                 (--streams N [--connections C] | --open N --pid PID)"
            );
            std::process::exit(2);
        }
    };
    let outcome = if args.open > 0 {
        hold_open(&args).await
    } else if let Some(other) = &args.paired {
        paired(&args, other).await
    } else {
        one_after_another(&args).await
    };
    if let Err(error) = outcome {
        eprintln!("stream_probe: {error}");
        std::process::exit(1);
    }
}

async fn one_after_another(args: &Args) -> Result<(), String> {
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let connection = connect(&args.url).await?;
        let requests: Vec<_> = (0..args.streams)
            .map(|_| args.template.to(&args.url))
            .collect();
        connections.spawn(timed(connection, requests));
    }
    let (mut first_bytes, mut gaps) = (Vec::new(), Vec::new());
    while let Some(timings) = connections.join_next().await {
        let (firsts, between) = timings.map_err(|e| e.to_string())??;
        first_bytes.extend(firsts);
        gaps.extend(between);
    }
    println!(
        "PROBE ttfb_p50_us={} ttfb_p99_us={} gap_p50_us={} gap_p99_us={}",
        percentile(&mut first_bytes, 50),
        percentile(&mut first_bytes, 99),
        percentile(&mut gaps, 50),
        percentile(&mut gaps, 99),
    );
    Ok(())
}

/// Sends `requests` one after another; each stream's time to its first chunk, and every gap
/// between chunks.
async fn timed(
    mut connection: SendRequest<Full<Bytes>>,
    requests: Vec<Request<Full<Bytes>>>,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (mut first_bytes, mut gaps) = (Vec::new(), Vec::new());
    for request in requests {
        let exchange = exchange(&mut connection, request, &mut gaps).await?;
        first_bytes.extend(exchange.first_byte);
    }
    Ok((first_bytes, gaps))
}

/// The times of one request, from sending it.
struct Exchange {
    /// To the first body chunk (none if the body was empty).
    first_byte: Option<Duration>,
    /// To the end of the body.
    done: Duration,
}

/// Sends `request` and reads its body to the end, pushing the gaps between chunks to `gaps`.
async fn exchange(
    connection: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    gaps: &mut Vec<Duration>,
) -> Result<Exchange, String> {
    let sent = Instant::now();
    let response = connection
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let (mut first_byte, mut last) = (None, None);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if frame.data_ref().is_none_or(|data| data.is_empty()) {
            continue;
        }
        let now = Instant::now();
        match last {
            None => first_byte = Some(now - sent),
            Some(previous) => gaps.push(now - previous),
        }
        last = Some(now);
    }
    Ok(Exchange {
        first_byte,
        done: sent.elapsed(),
    })
}

/// Each side's times to first byte and to the end of the body (`--paired`).
#[derive(Default)]
struct Side {
    first_bytes: Vec<Duration>,
    done: Vec<Duration>,
}

impl Side {
    fn record(&mut self, exchange: Exchange) {
        self.first_bytes.extend(exchange.first_byte);
        self.done.push(exchange.done);
    }

    fn absorb(&mut self, other: Side) {
        self.first_bytes.extend(other.first_bytes);
        self.done.extend(other.done);
    }

    fn words(&mut self, prefix: &str) -> String {
        format!(
            "{prefix}_ttfb_p50_us={} {prefix}_ttfb_p99_us={} {prefix}_done_p50_us={} {prefix}_done_p99_us={}",
            percentile(&mut self.first_bytes, 50),
            percentile(&mut self.first_bytes, 99),
            percentile(&mut self.done, 50),
            percentile(&mut self.done, 99),
        )
    }
}

async fn paired(args: &Args, other: &http::Uri) -> Result<(), String> {
    let mut lanes = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let servers = [
            (connect(&args.url).await?, args.url.clone()),
            (connect(other).await?, other.clone()),
        ];
        let rounds = Rounds {
            warm_up: args.warm_up,
            measured: args.streams,
        };
        lanes.spawn(lane(servers, rounds, args.template.clone()));
    }
    let (mut a, mut b) = (Side::default(), Side::default());
    while let Some(lane) = lanes.join_next().await {
        let (lane_a, lane_b) = lane.map_err(|e| e.to_string())??;
        a.absorb(lane_a);
        b.absorb(lane_b);
    }
    println!("PROBE {} {}", a.words("a"), b.words("b"));
    Ok(())
}

/// How many rounds a connection pair of `--paired` runs.
#[derive(Clone, Copy)]
struct Rounds {
    warm_up: usize,
    measured: usize,
}

/// One connection pair of `--paired`: rounds of a request to each, the first of each round
/// alternating; the warm-up rounds are not measured.
async fn lane(
    mut servers: [(SendRequest<Full<Bytes>>, http::Uri); 2],
    rounds: Rounds,
    request: Template,
) -> Result<(Side, Side), String> {
    let mut sides = [Side::default(), Side::default()];
    let mut gaps = Vec::new();
    for round in 0..rounds.warm_up + rounds.measured {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (connection, url) = &mut servers[side];
            let exchange = exchange(connection, request.to(url), &mut gaps).await?;
            if round >= rounds.warm_up {
                sides[side].record(exchange);
            }
        }
    }
    let [a, b] = sides;
    Ok((a, b))
}

async fn hold_open(args: &Args) -> Result<(), String> {
    let pid = args.pid.ok_or("--open needs --pid")?;
    // Every stream waits here after its first chunk, and again until the memory is read.
    let all_open = std::sync::Arc::new(Barrier::new(args.open + 1));
    let measured = std::sync::Arc::new(Barrier::new(args.open + 1));
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..args.open {
        let mut connection = connect(&args.url).await?;
        let request = args.template.to(&args.url);
        let (all_open, measured) = (all_open.clone(), measured.clone());
        streams.spawn(async move {
            // The body stays open until the memory is read; a failure still reaches both
            // barriers, so the others are not left waiting.
            let opened = async {
                let response = connection.send_request(request).await;
                let mut body = response.map_err(|e| e.to_string())?.into_body();
                match body.frame().await {
                    Some(Ok(_)) => Ok(body),
                    Some(Err(error)) => Err(error.to_string()),
                    None => Err("stream ended before its first chunk".to_owned()),
                }
            }
            .await;
            all_open.wait().await;
            measured.wait().await;
            opened.map(drop)
        });
    }
    all_open.wait().await;
    let rss = resident_kib(pid)?;
    measured.wait().await;
    while let Some(stream) = streams.join_next().await {
        stream.map_err(|e| e.to_string())??;
    }
    println!("PROBE open={} rss_kib={rss}", args.open);
    Ok(())
}

async fn connect(url: &http::Uri) -> Result<SendRequest<Full<Bytes>>, String> {
    let authority = url.authority().ok_or("the URL has no host")?.as_str();
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

/// What every request of a run carries.
#[derive(Clone)]
struct Template {
    body: Bytes,
    key: String,
    mock: Option<String>,
}

impl Template {
    fn to(&self, url: &http::Uri) -> Request<Full<Bytes>> {
        let mut builder = Request::post(url.clone())
            .header(header::HOST, url.authority().map_or("", |a| a.as_str()))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(mock) = &self.mock {
            builder = builder.header("x-mock", mock.as_str());
        }
        if !self.key.is_empty() {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", self.key));
        }
        builder
            .body(Full::new(self.body.clone()))
            .unwrap_or_default()
    }
}

/// The load script's non-streaming body: a 1 KB chat request.
fn json_body() -> Bytes {
    let filler = "lorem ipsum dolor sit amet ".repeat(34);
    Bytes::from(format!(
        r#"{{"model":"gpt-5.4","max_tokens":16,"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    ))
}

/// The p-th percentile in microseconds (0 with no samples).
fn percentile(samples: &mut [Duration], p: usize) -> u128 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let rank = (samples.len() * p).div_ceil(100).max(1) - 1;
    samples[rank].as_micros()
}

/// `VmRSS` of a process, in KiB.
fn resident_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("process {pid}: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("process {pid} has no VmRSS"))
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        url: http::Uri::default(),
        paired: None,
        template: Template {
            body: Bytes::from_static(STREAM_BODY.as_bytes()),
            key: String::new(),
            mock: None,
        },
        streams: 0,
        warm_up: 20,
        connections: 1,
        open: 0,
        pid: None,
    };
    let mut url = None;
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let value = words.next().ok_or(format!("{word} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{word}: not a number"))
        };
        match word.as_str() {
            "--url" => url = Some(value.parse().map_err(|_| format!("bad URL {value}"))?),
            "--paired" => {
                args.paired = Some(value.parse().map_err(|_| format!("bad URL {value}"))?)
            }
            "--body" => {
                args.template.body = match value.as_str() {
                    "json" => json_body(),
                    "stream" => Bytes::from_static(STREAM_BODY.as_bytes()),
                    _ => return Err(format!("--body {value}: json or stream")),
                }
            }
            "--key" => args.template.key = value.clone(),
            "--mock" => args.template.mock = Some(value.clone()),
            "--connections" => args.connections = number()?.max(1),
            "--streams" => args.streams = number()?,
            "--warm-up" => args.warm_up = number()?,
            "--open" => args.open = number()?,
            "--pid" => args.pid = Some(number()? as u32),
            _ => return Err(format!("unknown argument {word}")),
        }
    }
    args.url = url.ok_or("--url is required")?;
    if args.streams == 0 && args.open == 0 {
        return Err("--streams or --open is required".into());
    }
    if args.paired.is_some() && args.open > 0 {
        return Err("--paired goes with --streams, not --open".into());
    }
    Ok(args)
}
