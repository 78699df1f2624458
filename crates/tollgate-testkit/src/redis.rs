//! Real Redis servers for tests: a single node or a cluster of masters, each a `redis-server`
//! process of its own on an ephemeral loopback port, stopped when dropped.
//!
//! Nothing here assumes a Redis already running; `redis-server` and `redis-cli` must be on
//! the `PATH` (Debian: `apt-get install -y redis-server`, which `.ci/run` does).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new cluster may take to agree on its slots.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// A `redis-server` on `127.0.0.1`, with an append-only file in a directory of its own so a
/// [`restart`](RedisServer::restart) keeps the data. Killed, and its directory removed, when
/// dropped.
///
/// ```no_run
/// use tollgate_testkit::redis::RedisServer;
///
/// let mut redis = RedisServer::start()?;
/// assert!(redis.url().starts_with("redis://127.0.0.1:"));
/// redis.kill(); // as a crash would: nothing flushed beyond the last fsync
/// redis.restart()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub fn start() -> io::Result<Self> {
        RedisServer::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`["--appendfsync", "always"]`).
    pub fn start_with(args: &[&str]) -> io::Result<Self> {
        let port = free_port(false)?;
        let mut server = RedisServer {
            port,
            dir: scratch_dir(port)?,
            extra: args.iter().map(|arg| arg.to_string()).collect(),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (`SIGKILL`), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (after
    /// [`kill`](RedisServer::kill)); returns once it answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs one command with `redis-cli` and returns what it printed (for tests that look at
    /// the data as an operator would).
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        redis_cli(self.port, args)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .map_err(|error| missing("redis-server", error))?;
        self.child = Some(child);
        wait_for_ping(self.port, START_TIMEOUT)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of masters without replicas, each a [`RedisServer`] started with
/// `--cluster-enabled yes`, joined with `redis-cli --cluster create`. Stopped when dropped.
///
/// ```no_run
/// use tollgate_testkit::redis::RedisCluster;
///
/// let cluster = RedisCluster::start(3)?;
/// assert_eq!(cluster.urls().len(), 3);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3, as Redis requires) and waits until every one says
    /// `cluster_state:ok`.
    pub fn start(masters: usize) -> io::Result<Self> {
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            // The cluster bus listens on the port plus 10,000: both must be free.
            let port = free_port(true)?;
            let mut node = RedisServer {
                port,
                dir: scratch_dir(port)?,
                extra: ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
                    .map(String::from)
                    .to_vec(),
                child: None,
            };
            node.spawn()?;
            nodes.push(node);
        }
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let output = Command::new("redis-cli")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| missing("redis-cli", error))?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok()?;
        Ok(cluster)
    }

    /// Each node's `redis://` URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    fn wait_until_ok(&self) -> io::Result<()> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let ok = self.nodes.iter().all(|node| {
                node.cli(&["cluster", "info"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "the cluster did not reach cluster_state:ok",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A loopback port nothing listens on now (and, for a cluster node, whose bus port is free).
fn free_port(with_bus: bool) -> io::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if !with_bus {
            return Ok(port);
        }
        if let Some(bus) = port.checked_add(10_000)
            && TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free port pair for a cluster node"))
}

fn scratch_dir(port: u16) -> io::Result<PathBuf> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-redis-{}-{port}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn missing(program: &str, error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            error.kind(),
            format!("{program} is not installed (Debian: apt-get install -y redis-server)"),
        )
    } else {
        error
    }
}

/// Waits until the server on `port` answers `PING` with `PONG`.
fn wait_for_ping(port: u16, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match ping(port) {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(io::Error::other(format!(
                    "redis-server on port {port} did not start: {error}"
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn ping(port: u16) -> io::Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut line = String::new();
    BufReader::new(&mut stream).read_line(&mut line)?;
    // `-LOADING` while the append-only file is read back.
    if line.starts_with("+PONG") {
        Ok(())
    } else {
        Err(io::Error::other(line.trim_end().to_string()))
    }
}

fn redis_cli(port: u16, args: &[&str]) -> io::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| missing("redis-cli", error))?;
    if !output.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_keeps_its_data_across_a_crash_and_is_gone_when_dropped() {
        let mut redis = RedisServer::start().unwrap();
        assert_eq!(redis.cli(&["set", "k", "v"]).unwrap().trim(), "OK");
        // `everysec` may lose the last second to a crash; `always` loses nothing.
        redis
            .cli(&["config", "set", "appendfsync", "always"])
            .unwrap();
        redis.cli(&["set", "k2", "v2"]).unwrap();
        redis.kill();
        assert!(ping(redis.port()).is_err());
        redis.restart().unwrap();
        assert_eq!(redis.cli(&["get", "k2"]).unwrap().trim(), "v2");
        let dir = redis.dir.clone();
        assert!(dir.exists());
        drop(redis);
        assert!(!dir.exists());
    }

    #[test]
    fn a_cluster_of_three_masters_serves_every_slot() {
        let cluster = RedisCluster::start(3).unwrap();
        let info = cluster.nodes()[0].cli(&["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_size:3"), "{info}");
    }
}
