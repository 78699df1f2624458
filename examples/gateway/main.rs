//! `cargo run --example gateway`: a working OpenAI-compatible gateway built from tollgate's
//! layers, over hyper.
//!
//! With no upstream configured it starts the tollgate mock upstream in-process, so it works
//! offline. Flags: `--listen ADDR` (or `TOLLGATE_LISTEN`), `--config FILE` (TOML, see
//! `examples/gateway/gateway.toml`), `--upstream URL` (with the provider key in the variable the
//! config names, `TOLLGATE_UPSTREAM_KEY` by default). Connections live under the `[server]`
//! limits (header read and idle timeouts, a connection cap; `tollgate_testkit::serve`). Ctrl-C
//! shuts down gracefully: idle connections close at once, requests in flight finish within the
//! grace. SIGHUP reloads the catalog, keys and limits from the `--config` file (validated
//! first; a bad file changes nothing). One log line per request (request id, key id, model, status, latency,
//! error type); usage records go to the `tollgate::usage` target.

mod backends;
mod config;
mod stack;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tollgate_testkit::MockUpstream;

/// The demo admin key of the embedded configuration (`[[admin.keys]]` in gateway.toml).
const DEMO_ADMIN_KEY: &str = "adm-demo-0123456789abcdef0123456789abcdef";

struct Args {
    listen: Option<String>,
    config: Option<String>,
    upstream: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        listen: std::env::var("TOLLGATE_LISTEN").ok(),
        config: None,
        upstream: None,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().ok_or(format!("{word} needs a value"));
        match word.as_str() {
            "--listen" => args.listen = Some(value()?),
            "--config" => args.config = Some(value()?),
            "--upstream" => args.upstream = Some(value()?),
            "--help" | "-h" => {
                return Err(
                    "usage: gateway [--listen ADDR] [--config FILE] [--upstream URL]".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(error) = run().await {
        eprintln!("gateway: {error}");
        std::process::exit(1);
    }
}

/// Reloads the catalog, keys and limits from `path` on every SIGHUP; a file with errors
/// changes nothing and the gateway says why.
#[cfg(unix)]
async fn reload_on_hangup(path: String, handles: Arc<stack::Handles>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => return eprintln!("gateway: no reload on SIGHUP: {error}"),
    };
    while hangups.recv().await.is_some() {
        match handles.reload_file(&path).await {
            Ok(summary) => println!("{summary}"),
            Err(error) => eprintln!(
                "gateway: reload refused, the previous configuration still serves: {error}"
            ),
        }
    }
}

async fn run() -> Result<(), String> {
    let args = args()?;
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path).map_err(|error| format!("{path}: {error}"))?,
        None => config::DEFAULT_CONFIG.to_owned(),
    };
    let config = config::Config::parse(&text)?;
    let limits = config.server.limits()?;
    let listen = args.listen.clone().unwrap_or_else(|| config.listen.clone());

    // Without an upstream, the mock serves in-process; it lives as long as `run`.
    let mut mock = None;
    let upstream_url = match args
        .upstream
        .clone()
        .or_else(|| config.upstream.url.clone())
    {
        Some(url) => url,
        None => {
            let upstream = MockUpstream::builder()
                .models(config.catalog.models.iter().map(|m| m.id.clone()))
                .chunk_delay(Duration::from_millis(30))
                .record_calls(false)
                .start()
                .await;
            let url = upstream.url();
            mock = Some(upstream);
            url
        }
    };
    let upstream_key = std::env::var(&config.upstream.api_key_env).ok();
    let (gateway, handles) = stack::build(&config, &upstream_url, upstream_key.as_deref()).await?;

    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|error| format!("listen on {listen}: {error}"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    println!("tollgate gateway listening on http://{address}");
    match &mock {
        Some(_) => println!("upstream: the in-process mock at {upstream_url}"),
        None => println!("upstream: {upstream_url}"),
    }
    println!(
        "catalog: {} models; {}",
        handles.catalog.current().len(),
        handles.keys.describe()
    );
    for account in &config.accounts {
        use tollgate::balance::Ledger;
        let balance = handles
            .ledger
            .balance(&account.id)
            .await
            .unwrap_or_default();
        println!("account {}: balance {balance} micro-units", account.id);
    }
    if args.config.is_none() {
        let demo = config
            .auth
            .keys
            .first()
            .and_then(|entry| entry.key.as_ref())
            .map_or("", |key| key.expose());
        println!("demo key: {demo}");
        println!(
            "try:\n  curl -s http://{address}/v1/chat/completions -H 'Authorization: Bearer {demo}' -H 'Content-Type: application/json' -d '{{\"model\":\"gpt-5.4\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"
        );
    }

    let handles = Arc::new(handles);
    #[cfg(unix)]
    if let Some(path) = args.config.clone() {
        println!("reload: kill -HUP {} re-reads {path}", std::process::id());
        tokio::spawn(reload_on_hangup(path, handles.clone()));
    }
    if let Some(admin) = stack::admin_listener(&handles, &config, args.config.clone())? {
        let listen = config
            .admin
            .as_ref()
            .map_or("", |admin| admin.listen.as_str());
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|error| format!("admin: listen on {listen}: {error}"))?;
        let admin_address = listener.local_addr().map_err(|error| error.to_string())?;
        println!("admin API on http://{admin_address}/admin (see the README's \"Admin API\")");
        println!("metrics on http://{admin_address}/metrics (Prometheus text)");
        if args.config.is_none() {
            println!(
                "try:\n  curl -s http://{admin_address}/admin/keys -H 'Authorization: Bearer {DEMO_ADMIN_KEY}'\n  curl -s -X POST http://{admin_address}/admin/accounts/acct_broke/top-up -H 'Authorization: Bearer {DEMO_ADMIN_KEY}' -d '{{\"amount\":1000000}}'"
            );
        }
        let limits = config.server.limits()?;
        tokio::spawn(tollgate_testkit::serve(
            listener,
            admin,
            limits,
            std::future::pending::<()>(),
        ));
    }

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        println!(
            "shutting down: idle connections close now, requests in flight get {} s",
            limits.shutdown_grace().as_secs()
        );
    };
    let ended = tollgate_testkit::serve(listener, gateway, limits, shutdown).await;
    match ended.cut_off {
        0 => println!("all connections closed"),
        cut_off => println!("closed {cut_off} connections still busy after the grace"),
    }
    drop(mock);
    Ok(())
}
