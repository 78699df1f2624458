//! Usage records to JSON-lines files behind a non-blocking queue: records come back whole and
//! in order, a restart appends, size and time rotation lose and duplicate nothing, a torn last
//! line is not joined to the next record, a slow sink does not slow requests, and a full queue
//! drops and counts.

use std::convert::Infallible;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_balance::{
    BalanceGateLayer, Fsync, InMemoryLedger, JsonLinesFile, Ledger, NonBlockingUsageSink,
    UsageRecord, UsageSink, UsageSource,
};
use tollgate_core::{Body, ModelInfo, Prices, Principal};
use tower::{ServiceBuilder, ServiceExt};

/// A directory of its own under the system's temp dir, removed when the test passes.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "tollgate-sink-{test}-{}-{nanos}",
            std::process::id()
        ));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn record(n: u64) -> UsageRecord {
    UsageRecord {
        request_id: Some(format!("req_{n}")),
        key_id: "key_1".into(),
        account: "acct_1".into(),
        model: "gpt-5.4".into(),
        endpoint: Some("/v1/chat/completions"),
        prompt_tokens: 10 + n,
        cached_tokens: 0,
        completion_tokens: 20 + n,
        reasoning_tokens: 0,
        cost: 50 + 2 * n,
        uncapped_cost: 50 + 2 * n,
        capped: false,
        status: 200,
        latency_ms: n,
        usage: UsageSource::Observed,
    }
}

fn expected(range: std::ops::Range<u64>) -> Vec<Value> {
    range
        .map(|n| serde_json::to_value(record(n)).unwrap())
        .collect()
}

/// Every line of a file, each of which must be a whole JSON record.
fn lines(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{path:?} ends mid-line"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// The order a rotated `usage-<stamp>[-N].jsonl` was written in, checking the name's pattern.
fn rotation_order(file_name: &str) -> (String, u64) {
    let rest = file_name
        .strip_prefix("usage-")
        .and_then(|rest| rest.strip_suffix(".jsonl"))
        .unwrap_or_else(|| panic!("{file_name} is not usage-*.jsonl"));
    let (stamp, n) = match rest.split_once('-') {
        Some((stamp, n)) => (stamp, n.parse::<u64>().unwrap()),
        None => (rest, 0),
    };
    let bytes = stamp.as_bytes();
    assert_eq!(bytes.len(), 16, "{file_name}: stamp like 20261201T203500Z");
    assert!(
        bytes.iter().enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            15 => *b == b'Z',
            _ => b.is_ascii_digit(),
        }),
        "{file_name}: stamp like 20261201T203500Z"
    );
    (stamp.to_owned(), n)
}

/// The rotated files in the order they were written, then the current file if there is one.
fn files_in_order(dir: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    let mut current = None;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "usage.jsonl" {
            current = Some(path);
        } else {
            rotated.push((rotation_order(&name), path));
        }
    }
    rotated.sort();
    rotated
        .into_iter()
        .map(|(_, path)| path)
        .chain(current)
        .collect()
}

#[test]
fn records_come_back_from_the_file_whole_and_in_order() {
    let dir = TempDir::new("order");
    let usage = JsonLinesFile::open(dir.path()).unwrap().non_blocking(1024);
    for n in 0..50 {
        usage.record(record(n));
    }
    usage.flush_and_wait();
    assert_eq!((usage.recorded(), usage.dropped()), (50, 0));
    assert_eq!(usage.get_ref().failed(), 0);
    assert_eq!(lines(&dir.path().join("usage.jsonl")), expected(0..50));
}

#[test]
fn a_restart_appends_to_the_same_file() {
    let dir = TempDir::new("restart");
    let usage = JsonLinesFile::builder(dir.path())
        .fsync(Fsync::Never)
        .open()
        .unwrap()
        .non_blocking(1024);
    for n in 0..10 {
        usage.record(record(n));
    }
    // No flush: dropping the last handle drains the queue and syncs the file.
    drop(usage);
    assert_eq!(lines(&dir.path().join("usage.jsonl")), expected(0..10));

    let usage = JsonLinesFile::open(dir.path()).unwrap().non_blocking(1024);
    for n in 10..25 {
        usage.record(record(n));
    }
    drop(usage);
    assert_eq!(lines(&dir.path().join("usage.jsonl")), expected(0..25));
    assert_eq!(files_in_order(dir.path()).len(), 1, "no rotation");
}

#[test]
fn a_torn_last_line_is_not_joined_to_the_next_record() {
    let dir = TempDir::new("torn");
    fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("usage.jsonl");
    let first = serde_json::to_string(&record(0)).unwrap();
    // A whole record, then a crash halfway through the next.
    fs::write(&path, format!("{first}\n{}", &first[..40])).unwrap();
    let usage = JsonLinesFile::open(dir.path()).unwrap().non_blocking(16);
    usage.record(record(1));
    usage.flush_and_wait();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], &first[..40]);
    let last: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(last, serde_json::to_value(record(1)).unwrap());
}

#[test]
fn size_rotation_keeps_every_record_whole_and_once() {
    let dir = TempDir::new("size");
    let line_len = serde_json::to_string(&record(0)).unwrap().len() as u64 + 1;
    // Room for three records of this size, and a little over, never four.
    let max_bytes = 3 * line_len + 20;
    let usage = JsonLinesFile::builder(dir.path())
        .max_bytes(max_bytes)
        .fsync(Fsync::EveryRecord)
        .open()
        .unwrap()
        .non_blocking(1024);
    // Later records are up to 3 bytes longer: still three to a file.
    for n in 0..40 {
        usage.record(record(n));
    }
    usage.flush_and_wait();
    assert_eq!((usage.recorded(), usage.dropped()), (40, 0));
    assert_eq!(usage.get_ref().failed(), 0);

    let files = files_in_order(dir.path());
    assert_eq!(
        files.len(),
        14,
        "13 full files of 3 and the current one: {files:?}"
    );
    let mut all = Vec::new();
    for file in &files {
        let size = fs::metadata(file).unwrap().len();
        assert!(size <= max_bytes, "{file:?} has {size} bytes");
        let records = lines(file);
        let full = file != &dir.path().join("usage.jsonl");
        assert_eq!(records.len(), if full { 3 } else { 1 }, "{file:?}");
        all.extend(records);
    }
    assert_eq!(all, expected(0..40), "none lost, none twice, in order");
}

#[test]
fn a_record_larger_than_the_limit_gets_a_file_of_its_own() {
    let dir = TempDir::new("large");
    let usage = JsonLinesFile::builder(dir.path())
        .max_bytes(10)
        .open()
        .unwrap()
        .non_blocking(16);
    for n in 0..3 {
        usage.record(record(n));
    }
    usage.flush_and_wait();
    let files = files_in_order(dir.path());
    assert_eq!(files.len(), 3);
    for (n, file) in (0..).zip(&files) {
        assert_eq!(lines(file), expected(n..n + 1));
    }
}

#[test]
fn time_rotation_starts_a_new_file() {
    let dir = TempDir::new("time");
    let usage = JsonLinesFile::builder(dir.path())
        .rotate_every(Some(Duration::from_millis(500)))
        .open()
        .unwrap();
    // No idle flush during the test: rotation comes from the records and the explicit flush.
    let usage = NonBlockingUsageSink::builder(usage)
        .flush_interval(Duration::from_secs(60))
        .spawn();
    usage.record(record(0));
    usage.flush_and_wait();
    assert_eq!(files_in_order(dir.path()).len(), 1, "not yet");

    std::thread::sleep(Duration::from_millis(700));
    usage.record(record(1));
    usage.flush_and_wait();
    let files = files_in_order(dir.path());
    assert_eq!(
        files.len(),
        2,
        "rotated before the second record: {files:?}"
    );
    assert_eq!(lines(&files[0]), expected(0..1));
    assert_eq!(files[1], dir.path().join("usage.jsonl"));
    assert_eq!(lines(&files[1]), expected(1..2));

    // An idle file is rotated by a flush, and no empty file is started.
    std::thread::sleep(Duration::from_millis(700));
    usage.flush_and_wait();
    let files = files_in_order(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|file| file != &dir.path().join("usage.jsonl"))
    );
    assert_eq!(lines(&files[1]), expected(1..2));
}

/// Counts the inner sink's flushes.
#[derive(Clone, Default)]
struct Flushes(Arc<AtomicU64>);

impl UsageSink for Flushes {
    fn record(&self, _record: UsageRecord) {}

    fn flush(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn the_thread_flushes_when_idle_and_when_the_last_handle_goes() {
    let flushes = Flushes::default();
    let usage = NonBlockingUsageSink::builder(flushes.clone())
        .flush_interval(Duration::from_millis(20))
        .spawn();
    usage.record(record(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    while flushes.0.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(flushes.0.load(Ordering::Relaxed) > 0, "flushed when idle");

    let flushes = Flushes::default();
    let usage = NonBlockingUsageSink::builder(flushes.clone())
        .flush_interval(Duration::from_secs(60))
        .spawn();
    let clone = usage.clone();
    usage.record(record(0));
    drop(usage);
    assert_eq!(
        flushes.0.load(Ordering::Relaxed),
        0,
        "a clone is still alive"
    );
    drop(clone);
    assert_eq!(
        flushes.0.load(Ordering::Relaxed),
        1,
        "flushed before exiting"
    );
}

/// Blocks in `record` until released, telling the test when it is there.
struct Gate {
    seen: Arc<Mutex<Vec<Option<String>>>>,
    entered: mpsc::Sender<()>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl UsageSink for Gate {
    fn record(&self, record: UsageRecord) {
        self.seen.lock().unwrap().push(record.request_id);
        let _ = self.entered.send(());
        // Returns at once when the test drops the sender.
        let _ = self.release.lock().unwrap().recv();
    }
}

#[test]
fn a_full_queue_drops_records_and_counts_them() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (entered, inside) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let gate = Gate {
        seen: seen.clone(),
        entered,
        release: Mutex::new(released),
    };
    let usage = NonBlockingUsageSink::new(gate, 2);
    usage.record(record(0));
    // The thread holds record 0 in the sink: the queue is empty again.
    inside.recv_timeout(Duration::from_secs(5)).unwrap();
    usage.record(record(1));
    usage.record(record(2));
    assert_eq!(usage.dropped(), 0, "two fit in the queue");
    usage.record(record(3));
    usage.record(record(4));
    assert_eq!(usage.dropped(), 2, "the queue was full");
    assert_eq!(usage.recorded(), 0, "the sink is still on the first");

    drop(release);
    usage.flush_and_wait();
    assert_eq!((usage.recorded(), usage.dropped()), (3, 2));
    assert_eq!(
        *seen.lock().unwrap(),
        ["req_0", "req_1", "req_2"].map(|id| Some(id.to_owned()))
    );
}

/// Takes 50 ms per record, like a disk on a bad day.
struct SlowSink;

impl UsageSink for SlowSink {
    fn record(&self, _record: UsageRecord) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_slow_sink_does_not_slow_requests() {
    const REQUESTS: u64 = 100;
    let ledger = Arc::new(InMemoryLedger::new());
    ledger.top_up("acct_1", 100_000_000).await.unwrap();
    let usage = NonBlockingUsageSink::new(SlowSink, 8);
    let service = ServiceBuilder::new()
        .layer(BalanceGateLayer::with_shared_ledger(ledger.clone()).usage_sink(usage.clone()))
        .service_fn(|_request: Request<Body>| async {
            let body = json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}});
            Ok::<_, Infallible>(Response::new(Body::from(body.to_string())))
        });
    let prices = Prices::new(1_000_000, 2_000_000);

    let started = Instant::now();
    for _ in 0..REQUESTS {
        let mut request = Request::new(Body::empty());
        request
            .extensions_mut()
            .insert(Principal::new("key_1", "acct_1"));
        request
            .extensions_mut()
            .insert(ModelInfo::new("gpt-5.4", 8_192, 1_000).prices(prices));
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        // The record is made once the body has been read and the request settled.
        response.into_body().collect().await.unwrap();
    }
    let elapsed = started.elapsed();
    // A blocking sink would take 100 x 50 ms = 5 s.
    assert!(
        elapsed < Duration::from_secs(1),
        "{REQUESTS} requests took {elapsed:?}"
    );
    assert_eq!(
        ledger.balance("acct_1").await.unwrap(),
        100_000_000 - REQUESTS * prices.cost(5, 10),
        "every request settled"
    );
    assert!(usage.dropped() > 0, "a queue of 8 cannot hold 100 records");

    let waiting = usage.clone();
    tokio::task::spawn_blocking(move || waiting.flush_and_wait())
        .await
        .unwrap();
    assert!(usage.recorded() > 0);
    assert_eq!(usage.recorded() + usage.dropped(), REQUESTS);
}

#[test]
fn bad_names_and_unusable_directories_are_errors() {
    let dir = TempDir::new("errors");
    for name in ["", "..", "a/b", "/abs"] {
        let error = JsonLinesFile::builder(dir.path())
            .name(name)
            .open()
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{name:?}");
    }
    // A file where the directory should be.
    fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, "").unwrap();
    assert!(JsonLinesFile::open(&file).is_err());
}
