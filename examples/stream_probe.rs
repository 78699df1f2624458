//! `cargo run --release --example stream_probe -- --url URL [--key KEY] ...`: the streaming
//! client of `scripts/loadtest`, over one hyper connection per stream.
//!
//! - `--streams N [--connections C]`: N streams one after another on each of C connections
//!   (1 by default); prints the time from sending each request to its first body chunk (time
//!   to first byte) and the gaps between chunks, p50 and p99 in microseconds.
//! - `--open N --pid PID`: N streams at once; once every one has its first chunk, prints the
//!   resident memory of process PID (the server under test), then lets them go.
//!
//! `--mock BEHAVIOR` sends an `x-mock` header (the testkit mock's per-request pacing, such as
//! `chunks=64; chunk-delay-ms=20`). Output is one line of `name=value` words after `PROBE`, for the script to read.

use std::time::{Duration, Instant};

use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const BODY: &str =
    r#"{"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

struct Args {
    url: http::Uri,
    key: String,
    mock: Option<String>,
    streams: usize,
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
                 (--streams N [--connections C] | --open N --pid PID)"
            );
            std::process::exit(2);
        }
    };
    let outcome = if args.open > 0 {
        hold_open(&args).await
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
        let requests: Vec<_> = (0..args.streams).map(|_| request(args)).collect();
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
        let sent = Instant::now();
        let response = connection
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let mut body = response.into_body();
        let mut last = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if frame.data_ref().is_none_or(|data| data.is_empty()) {
                continue;
            }
            let now = Instant::now();
            match last {
                None => first_bytes.push(now - sent),
                Some(previous) => gaps.push(now - previous),
            }
            last = Some(now);
        }
    }
    Ok((first_bytes, gaps))
}

async fn hold_open(args: &Args) -> Result<(), String> {
    let pid = args.pid.ok_or("--open needs --pid")?;
    // Every stream waits here after its first chunk, and again until the memory is read.
    let all_open = std::sync::Arc::new(Barrier::new(args.open + 1));
    let measured = std::sync::Arc::new(Barrier::new(args.open + 1));
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..args.open {
        let mut connection = connect(&args.url).await?;
        let request = request(args);
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

fn request(args: &Args) -> Request<Full<Bytes>> {
    let mut builder = Request::post(args.url.clone())
        .header(
            header::HOST,
            args.url.authority().map_or("", |a| a.as_str()),
        )
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(mock) = &args.mock {
        builder = builder.header("x-mock", mock.as_str());
    }
    if !args.key.is_empty() {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", args.key));
    }
    builder
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap_or_default()
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
        key: String::new(),
        mock: None,
        streams: 0,
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
            "--key" => args.key = value.clone(),
            "--mock" => args.mock = Some(value.clone()),
            "--connections" => args.connections = number()?.max(1),
            "--streams" => args.streams = number()?,
            "--open" => args.open = number()?,
            "--pid" => args.pid = Some(number()? as u32),
            _ => return Err(format!("unknown argument {word}")),
        }
    }
    args.url = url.ok_or("--url is required")?;
    if args.streams == 0 && args.open == 0 {
        return Err("--streams or --open is required".into());
    }
    Ok(args)
}
