//! `cargo run --release --example bare_proxy -- --listen ADDR --upstream URL`: the baseline of
//! `scripts/loadtest`. A hyper server that forwards every request to the upstream through a
//! pooled hyper-util client, bodies streamed both ways, TCP_NODELAY on both sides, and nothing
//! else: no auth, no parsing, no logging. What the gateway costs is measured against this.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type ProxyBody = Either<Incoming, Empty<Bytes>>;

#[tokio::main]
async fn main() {
    let (listen, upstream): (String, Arc<str>) = match args() {
        Ok((listen, upstream)) => (listen, upstream.into()),
        Err(usage) => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("bare_proxy: cannot listen on {listen}: {error}");
            std::process::exit(1);
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    println!("bare proxy listening on http://{listen}, forwarding to {upstream}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream: Arc<str> = upstream.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), upstream.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Arc<str>,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{upstream}{path}").parse::<Uri>() else {
        return Ok(bad_gateway());
    };
    *request.uri_mut() = uri;
    Ok(match client.request(request).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => bad_gateway(),
    })
}

fn bad_gateway() -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

fn args() -> Result<(String, String), String> {
    let usage = "usage: bare_proxy --listen ADDR --upstream URL";
    let (mut listen, mut upstream) = (None, None);
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match (word.as_str(), words.next()) {
            ("--listen", Some(value)) => listen = Some(value),
            ("--upstream", Some(value)) => upstream = Some(value.trim_end_matches('/').to_owned()),
            _ => return Err(usage.into()),
        }
    }
    listen.zip(upstream).ok_or_else(|| usage.into())
}
