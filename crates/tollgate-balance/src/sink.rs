//! Usage records off the request path ([`NonBlockingUsageSink`]) and into files that survive a
//! restart ([`JsonLinesFile`]).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use jiff::tz::Offset;

use crate::{UsageRecord, UsageSink};

const DEFAULT_CAPACITY: usize = 8192;
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Enough to keep a busy thread from spinning on `recv_timeout`.
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(1);
const THREAD_NAME: &str = "tollgate-usage-sink";

const DEFAULT_NAME: &str = "usage";
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_ROTATE_EVERY: Option<Duration> = Some(Duration::from_secs(60 * 60));
/// Lines are written to the file once this much is pending, whatever the fsync policy.
const WRITE_BUFFER: usize = 64 * 1024;
/// A failing disk would otherwise log once per request.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Runs a [`UsageSink`] on its own thread behind a bounded queue, so that a slow sink (a file
/// on a busy disk, a remote collector) never slows a request.
///
/// [`record`](UsageSink::record) never blocks: it puts the record on the queue, or, when the
/// queue is full (or the thread is gone), drops it and counts it in
/// [`dropped`](NonBlockingUsageSink::dropped). The thread, named `tollgate-usage-sink`, hands
/// records to the inner sink in order, calls its [`flush`](UsageSink::flush) whenever the queue
/// has been idle for the flush interval (1 s by default), and, once the last handle is dropped,
/// drains the queue, flushes and exits. Dropping the last handle waits for that, so that
/// records queued before a graceful shutdown reach the sink; drop it where blocking is fine
/// (the end of `main`), not on a runtime's worker.
///
/// Records still queued when the process is killed are lost: size the queue for bursts, not as
/// storage. Clones share the queue, the thread and the counters.
///
/// ```
/// use tollgate_balance::{BalanceGateLayer, InMemoryLedger, JsonLinesFile};
///
/// # let dir = std::env::temp_dir().join(format!("tollgate-doc-nb-{}", std::process::id()));
/// let usage = JsonLinesFile::open(&dir)?.non_blocking(8192);
/// let layer = BalanceGateLayer::new(InMemoryLedger::new()).usage_sink(usage.clone());
/// // ... serve; at shutdown:
/// drop(layer);
/// usage.flush_and_wait();
/// assert_eq!(usage.dropped(), 0);
/// # drop(usage);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct NonBlockingUsageSink<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    // Declared before `_worker` so that it is dropped first: the thread sees the queue close,
    // drains it and exits, and only then does `_worker` (held for its `Drop`) wait for it.
    queue: SyncSender<Message>,
    _worker: Worker,
    sink: Arc<S>,
    recorded: Arc<AtomicU64>,
    dropped: AtomicU64,
    capacity: usize,
}

enum Message {
    Record(UsageRecord),
    /// Flush the inner sink, then answer (when someone waits).
    Flush(Option<SyncSender<()>>),
}

/// Joins the sink's thread when the last handle goes.
struct Worker(Option<JoinHandle<()>>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            // An inner sink holding the last handle would otherwise wait for itself.
            if thread.thread().id() != thread::current().id() {
                // A panicking inner sink already reported itself; there is nothing to add.
                let _ = thread.join();
            }
        }
    }
}

impl<S: UsageSink> NonBlockingUsageSink<S> {
    /// Runs `sink` on its own thread behind a queue of `capacity` records (at least 1), with
    /// the default flush interval (1 s).
    ///
    /// ```
    /// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink};
    ///
    /// let usage = NonBlockingUsageSink::new(TracingUsageSink, 8192);
    /// assert_eq!(usage.dropped(), 0);
    /// ```
    pub fn new(sink: S, capacity: usize) -> Self {
        NonBlockingUsageSink::builder(sink)
            .capacity(capacity)
            .spawn()
    }

    /// Configures the queue before the thread starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink};
    ///
    /// let usage = NonBlockingUsageSink::builder(TracingUsageSink)
    ///     .capacity(1024)
    ///     .flush_interval(Duration::from_millis(200))
    ///     .spawn();
    /// # let _ = usage;
    /// ```
    pub fn builder(sink: S) -> NonBlockingUsageSinkBuilder<S> {
        NonBlockingUsageSinkBuilder {
            sink,
            capacity: DEFAULT_CAPACITY,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }

    /// Records dropped because the queue was full or the thread was gone.
    ///
    /// ```
    /// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink};
    ///
    /// let usage = NonBlockingUsageSink::new(TracingUsageSink, 8192);
    /// assert_eq!(usage.dropped(), 0);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records the inner sink has received (its `record` returned).
    ///
    /// ```
    /// # use tollgate_balance::{UsageRecord, UsageSource};
    /// # fn a_record() -> UsageRecord {
    /// #     UsageRecord { request_id: None, key_id: "key_1".into(), account: "acct_1".into(),
    /// #         model: "m".into(), endpoint: None, prompt_tokens: 1, cached_tokens: 0,
    /// #         completion_tokens: 1, reasoning_tokens: 0, cost: 3, uncapped_cost: 3,
    /// #         capped: false, status: 200, latency_ms: 1, usage: UsageSource::Observed }
    /// # }
    /// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink, UsageSink};
    ///
    /// let usage = NonBlockingUsageSink::new(TracingUsageSink, 8192);
    /// usage.record(a_record());
    /// usage.flush_and_wait();
    /// assert_eq!(usage.recorded(), 1);
    /// ```
    pub fn recorded(&self) -> u64 {
        self.shared.recorded.load(Ordering::Relaxed)
    }

    /// Blocks until every record queued before the call has reached the inner sink and the
    /// inner sink's [`flush`](UsageSink::flush) has run; returns at once if the thread is gone.
    ///
    /// For tests and graceful shutdown, never the request path: it waits behind a full queue
    /// and a slow sink. The [`UsageSink::flush`] of this type only asks for a flush, without
    /// waiting.
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-wait-{}", std::process::id()));
    /// let usage = JsonLinesFile::open(&dir)?.non_blocking(8192);
    /// usage.flush_and_wait();
    /// assert_eq!(usage.get_ref().failed(), 0);
    /// # drop(usage);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flush_and_wait(&self) {
        let (reply, done) = mpsc::sync_channel(1);
        if self.shared.queue.send(Message::Flush(Some(reply))).is_ok() {
            // An error means the thread died (its sink panicked): nothing more will be flushed.
            let _ = done.recv();
        }
    }

    /// The inner sink, to read what it counts (its thread has it too: calling its `record`
    /// from here bypasses the queue).
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-ref-{}", std::process::id()));
    /// let usage = JsonLinesFile::open(&dir)?.non_blocking(8192);
    /// assert_eq!(usage.get_ref().path(), dir.join("usage.jsonl"));
    /// # drop(usage);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.shared.sink
    }
}

impl<S: UsageSink> UsageSink for NonBlockingUsageSink<S> {
    fn record(&self, record: UsageRecord) {
        match self.shared.queue.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks the thread to flush the inner sink soon, without waiting (and without asking when
    /// the queue is full: the thread flushes when idle anyway). To wait, see
    /// [`flush_and_wait`](NonBlockingUsageSink::flush_and_wait).
    fn flush(&self) {
        let _ = self.shared.queue.try_send(Message::Flush(None));
    }
}

impl<S> Clone for NonBlockingUsageSink<S> {
    fn clone(&self) -> Self {
        NonBlockingUsageSink {
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for NonBlockingUsageSink<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonBlockingUsageSink")
            .field("sink", &self.shared.sink)
            .field("capacity", &self.shared.capacity)
            .field("recorded", &self.shared.recorded.load(Ordering::Relaxed))
            .field("dropped", &self.shared.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

/// Configures a [`NonBlockingUsageSink`]; [`spawn`](NonBlockingUsageSinkBuilder::spawn) starts
/// its thread.
///
/// ```
/// use std::time::Duration;
/// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink};
///
/// let builder = NonBlockingUsageSink::builder(TracingUsageSink).capacity(64);
/// let usage = builder.flush_interval(Duration::from_secs(5)).spawn();
/// # let _ = usage;
/// ```
#[derive(Debug)]
pub struct NonBlockingUsageSinkBuilder<S> {
    sink: S,
    capacity: usize,
    flush_interval: Duration,
}

impl<S: UsageSink> NonBlockingUsageSinkBuilder<S> {
    /// How many records may wait for the thread (8192 by default, at least 1); more are
    /// dropped.
    ///
    /// ```
    /// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink};
    ///
    /// let usage = NonBlockingUsageSink::builder(TracingUsageSink).capacity(100_000).spawn();
    /// # let _ = usage;
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        // A zero-capacity channel is a rendezvous: nearly every record would be dropped.
        self.capacity = capacity.max(1);
        self
    }

    /// How long the queue stays idle before the thread flushes the inner sink (1 s by default,
    /// at least 1 ms); it flushes again each time that passes with nothing queued.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink};
    ///
    /// let usage = NonBlockingUsageSink::builder(TracingUsageSink)
    ///     .flush_interval(Duration::from_millis(100))
    ///     .spawn();
    /// # let _ = usage;
    /// ```
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(MIN_FLUSH_INTERVAL);
        self
    }

    /// Starts the thread. Should the system refuse a thread, that is logged and every record
    /// is dropped (and counted), rather than a panic.
    ///
    /// ```
    /// use tollgate_balance::{NonBlockingUsageSink, TracingUsageSink};
    ///
    /// let usage = NonBlockingUsageSink::builder(TracingUsageSink).spawn();
    /// # let _ = usage;
    /// ```
    pub fn spawn(self) -> NonBlockingUsageSink<S> {
        let (queue, receiver) = mpsc::sync_channel(self.capacity);
        let sink = Arc::new(self.sink);
        let recorded = Arc::new(AtomicU64::new(0));
        let spawned = thread::Builder::new().name(THREAD_NAME.into()).spawn({
            let sink = sink.clone();
            let recorded = recorded.clone();
            let interval = self.flush_interval;
            move || drain(&*sink, &receiver, &recorded, interval)
        });
        // On failure the receiver went with the closure: `record` sees the queue closed.
        let thread = match spawned {
            Ok(thread) => Some(thread),
            Err(error) => {
                tracing::error!(error = %error, "could not start the usage sink's thread: usage records will be dropped");
                None
            }
        };
        NonBlockingUsageSink {
            shared: Arc::new(Shared {
                queue,
                _worker: Worker(thread),
                sink,
                recorded,
                dropped: AtomicU64::new(0),
                capacity: self.capacity,
            }),
        }
    }
}

/// The sink's thread: records in order, a flush when idle or asked, and a last flush once
/// every handle is gone and the queue is empty.
fn drain<S: UsageSink>(
    sink: &S,
    queue: &Receiver<Message>,
    recorded: &AtomicU64,
    interval: Duration,
) {
    loop {
        match queue.recv_timeout(interval) {
            Ok(Message::Record(record)) => {
                sink.record(record);
                recorded.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Message::Flush(reply)) => {
                sink.flush();
                if let Some(reply) = reply {
                    // The waiter may have given up; nothing to do then.
                    let _ = reply.send(());
                }
            }
            Err(RecvTimeoutError::Timeout) => sink.flush(),
            Err(RecvTimeoutError::Disconnected) => {
                sink.flush();
                return;
            }
        }
    }
}

/// When [`JsonLinesFile`] fsyncs (`fdatasync`) what it wrote. Whatever the policy, the file is
/// fsynced before it is rotated and when the sink is dropped.
///
/// A process that dies loses only what it had not yet written to the file (records still in
/// [`NonBlockingUsageSink`]'s queue and at most 64 KiB of lines in the sink's buffer, which is
/// written out with every fsync and every [`flush`](UsageSink::flush)); a machine that crashes
/// or loses power also loses what the OS had not put on disk, which the policy bounds.
///
/// ```
/// use std::time::Duration;
/// use tollgate_balance::{Fsync, JsonLinesFile};
///
/// assert_eq!(Fsync::default(), Fsync::Interval(Duration::from_secs(1)));
/// # let dir = std::env::temp_dir().join(format!("tollgate-doc-fsync-{}", std::process::id()));
/// let file = JsonLinesFile::builder(&dir).fsync(Fsync::EveryRecord).open()?;
/// # drop(file);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Write out and fsync each record: a crash loses nothing the sink received, at the cost of
    /// a disk sync per request.
    EveryRecord,
    /// Write out and fsync with the first record after this much time since the last fsync,
    /// and on each [`flush`](UsageSink::flush) (which [`NonBlockingUsageSink`] calls when
    /// idle): a crash loses up to about this interval's worth of records (or the wrapper's
    /// flush interval's, if longer). The default, at 1 s.
    Interval(Duration),
    /// Leave syncing to the OS (lines are still written out when the buffer fills and on each
    /// flush): a crash loses whatever the OS had not written, typically up to half a minute.
    Never,
}

impl Default for Fsync {
    fn default() -> Self {
        Fsync::Interval(Duration::from_secs(1))
    }
}

/// Writes each [`UsageRecord`] as one JSON line to `<dir>/<name>.jsonl` (`usage.jsonl` by
/// default), synchronously: run it behind a [`NonBlockingUsageSink`]
/// ([`non_blocking`](JsonLinesFile::non_blocking)), not on the request path.
///
/// - The file is opened in append mode (the directory created if need be), so a restart
///   continues it and loses nothing written before. If it ends in a torn line (a crash
///   mid-write), the next record starts on a new line.
/// - Rotation: before a record would take the file past
///   [`max_bytes`](JsonLinesFileBuilder::max_bytes) (64 MiB by default), or once it has been
///   open for [`rotate_every`](JsonLinesFileBuilder::rotate_every) (1 hour by default; checked
///   at each record and each flush), the file is fsynced and renamed to
///   `<name>-<UTC time of the rotation, as 20261201T203500Z>.jsonl`, with `-1`, `-2`, ... added
///   when that name is taken (an existing file is never overwritten), and the next record
///   starts a new `<name>.jsonl`. A record is never split across files; a record larger than
///   `max_bytes` gets a file of its own. An empty file is never rotated. After a restart, a
///   file's age counts from its creation time where the file system records one, else from
///   when it was reopened.
/// - Durability: see [`Fsync`] (an fsync every second by default).
/// - Errors never panic: a record that cannot be written is counted in
///   [`failed`](JsonLinesFile::failed), a warning is logged at most every 10 s, and the file is
///   reopened at the next record.
///
/// The directory is this sink's: one sink per directory and name.
///
/// ```
/// use std::time::Duration;
/// use tollgate_balance::{BalanceGateLayer, Fsync, InMemoryLedger, JsonLinesFile};
///
/// # let dir = std::env::temp_dir().join(format!("tollgate-doc-file-{}", std::process::id()));
/// let usage = JsonLinesFile::builder(&dir)
///     .name("billing")
///     .max_bytes(16 * 1024 * 1024)
///     .rotate_every(Some(Duration::from_secs(24 * 60 * 60)))
///     .fsync(Fsync::Interval(Duration::from_secs(5)))
///     .open()?
///     .non_blocking(8192);
/// let layer = BalanceGateLayer::new(InMemoryLedger::new()).usage_sink(usage.clone());
/// # drop((layer, usage));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct JsonLinesFile {
    config: FileConfig,
    state: Mutex<FileState>,
    failed: AtomicU64,
}

struct FileConfig {
    dir: PathBuf,
    name: String,
    path: PathBuf,
    max_bytes: u64,
    rotate_every: Option<Duration>,
    fsync: Fsync,
}

struct FileState {
    /// `None` after an error: reopened at the next record.
    file: Option<File>,
    /// Whole lines not yet written to the file. Not a `BufWriter`: when a write fails, this
    /// says which records were lost, so that they are counted.
    pending: Vec<u8>,
    pending_records: u64,
    /// The file's length, pending lines included.
    size: u64,
    /// When the current file was started, for time rotation.
    started: SystemTime,
    /// Written to the file since the last fsync.
    unsynced: bool,
    last_sync: Instant,
    last_warning: Option<Instant>,
}

impl JsonLinesFile {
    /// Opens (or creates) `<dir>/usage.jsonl` with the defaults: 64 MiB and 1 hour rotation,
    /// an fsync every second.
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-open-{}", std::process::id()));
    /// let file = JsonLinesFile::open(&dir)?;
    /// assert!(dir.join("usage.jsonl").exists());
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        JsonLinesFile::builder(dir).open()
    }

    /// Configures the file sink; [`open`](JsonLinesFileBuilder::open) opens it.
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-builder-{}", std::process::id()));
    /// let file = JsonLinesFile::builder(&dir).name("billing").open()?;
    /// assert_eq!(file.path(), dir.join("billing.jsonl"));
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder(dir: impl Into<PathBuf>) -> JsonLinesFileBuilder {
        JsonLinesFileBuilder {
            dir: dir.into(),
            name: DEFAULT_NAME.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            rotate_every: DEFAULT_ROTATE_EVERY,
            fsync: Fsync::default(),
        }
    }

    /// Runs this sink on its own thread behind a queue of `capacity` records:
    /// [`NonBlockingUsageSink::new`].
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-wrap-{}", std::process::id()));
    /// let usage = JsonLinesFile::open(&dir)?.non_blocking(8192);
    /// # drop(usage);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn non_blocking(self, capacity: usize) -> NonBlockingUsageSink<JsonLinesFile> {
        NonBlockingUsageSink::new(self, capacity)
    }

    /// Records that could not be written (the file could not be opened or written; some of
    /// those lost in a failed write may have reached the file in part).
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-failed-{}", std::process::id()));
    /// let file = JsonLinesFile::open(&dir)?;
    /// assert_eq!(file.failed(), 0);
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The file being written, `<dir>/<name>.jsonl`.
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-path-{}", std::process::id()));
    /// let file = JsonLinesFile::open(&dir)?;
    /// assert_eq!(file.path(), dir.join("usage.jsonl"));
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    fn lock(&self) -> MutexGuard<'_, FileState> {
        // The state stays consistent between statements, so a panic elsewhere does not spoil it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens `<name>.jsonl` for appending, noting its size and age.
    fn reopen(&self, state: &mut FileState) -> io::Result<()> {
        fs::create_dir_all(&self.config.dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.config.path)?;
        let metadata = file.metadata()?;
        let len = metadata.len();
        let torn = len > 0 && {
            let mut last = [0u8];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            last[0] != b'\n'
        };
        // Nothing is pending here: a failed write counted and cleared it, a rotation wrote it.
        if torn {
            state.pending.push(b'\n');
        }
        state.size = len + u64::from(torn);
        state.started = match metadata.created() {
            Ok(created) if len > 0 => created,
            _ => SystemTime::now(),
        };
        state.unsynced = false;
        state.file = Some(file);
        Ok(())
    }

    fn rotation_due(&self, state: &FileState, next: u64) -> bool {
        if state.size == 0 {
            return false;
        }
        let too_big = state.size.saturating_add(next) > self.config.max_bytes;
        // A clock set back makes the file young again rather than rotating it.
        let too_old = self.config.rotate_every.is_some_and(|every| {
            SystemTime::now()
                .duration_since(state.started)
                .is_ok_and(|age| age >= every)
        });
        too_big || too_old
    }

    /// Syncs and closes the current file and renames it out of the way; the next record opens
    /// a new one.
    fn rotate(&self, state: &mut FileState) -> io::Result<()> {
        self.sync(state)?;
        state.file = None;
        let target = self.rotated_name(SystemTime::now())?;
        fs::rename(&self.config.path, &target)?;
        // Makes the rename itself durable; not possible everywhere (Windows), hence best effort.
        if let Ok(dir) = File::open(&self.config.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// `<name>-<stamp>.jsonl`, or the first of `<name>-<stamp>-1.jsonl`, ... that is free.
    /// Checked then renamed rather than hard-linked: a crash between a link and the unlink
    /// would leave the records under both names, counted twice.
    fn rotated_name(&self, now: SystemTime) -> io::Result<PathBuf> {
        let at = Offset::UTC.to_datetime(Timestamp::try_from(now).unwrap_or(Timestamp::UNIX_EPOCH));
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            at.year(),
            at.month(),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        let name = &self.config.name;
        let mut n = 0u64;
        loop {
            let file = match n {
                0 => format!("{name}-{stamp}.jsonl"),
                n => format!("{name}-{stamp}-{n}.jsonl"),
            };
            let candidate = self.config.dir.join(file);
            match fs::symlink_metadata(&candidate) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(candidate),
                Err(error) => return Err(error),
                Ok(_) => n += 1,
            }
        }
    }

    /// Writes the pending lines to the file; if that fails they are counted as failed and the
    /// file is reopened at the next record.
    fn write_out(&self, state: &mut FileState) -> io::Result<()> {
        if state.pending.is_empty() {
            return Ok(());
        }
        let written = match state.file.as_mut() {
            Some(file) => file.write_all(&state.pending),
            None => Err(io::Error::other("the usage file is not open")),
        };
        match written {
            Ok(()) => {
                state.unsynced = true;
            }
            Err(_) => {
                self.failed
                    .fetch_add(state.pending_records, Ordering::Relaxed);
                state.file = None;
            }
        }
        state.pending.clear();
        state.pending_records = 0;
        written
    }

    /// Writes out the pending lines and fsyncs them.
    fn sync(&self, state: &mut FileState) -> io::Result<()> {
        self.write_out(state)?;
        if state.unsynced
            && let Some(file) = &state.file
        {
            file.sync_data()?;
            state.unsynced = false;
        }
        state.last_sync = Instant::now();
        Ok(())
    }

    fn warn(&self, state: &mut FileState, doing: &str, error: &dyn fmt::Display) {
        let now = Instant::now();
        if state
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return;
        }
        state.last_warning = Some(now);
        tracing::warn!(
            path = %self.config.path.display(),
            error = %error,
            failed_records = self.failed(),
            "usage file: {doing} failed (warnings at most every 10 s)"
        );
    }

    fn write_record(&self, state: &mut FileState, record: &UsageRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.warn(state, "serializing a record", &error);
                return;
            }
        };
        line.push(b'\n');
        if state.file.is_none()
            && let Err(error) = self.reopen(state)
        {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.warn(state, "opening", &error);
            return;
        }
        if self.rotation_due(state, line.len() as u64) {
            if let Err(error) = self.rotate(state) {
                self.warn(state, "rotating", &error);
            }
            // A new file after a rotation; the same one, grown past its limit, if the rename
            // failed: better than losing the record.
            if state.file.is_none()
                && let Err(error) = self.reopen(state)
            {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.warn(state, "opening", &error);
                return;
            }
        }
        state.size += line.len() as u64;
        state.pending.extend_from_slice(&line);
        state.pending_records += 1;
        let result = match self.config.fsync {
            Fsync::EveryRecord => self.sync(state),
            Fsync::Interval(every) if state.last_sync.elapsed() >= every => self.sync(state),
            Fsync::Interval(_) | Fsync::Never if state.pending.len() >= WRITE_BUFFER => {
                self.write_out(state)
            }
            Fsync::Interval(_) | Fsync::Never => Ok(()),
        };
        if let Err(error) = result {
            self.warn(state, "writing", &error);
        }
    }
}

impl UsageSink for JsonLinesFile {
    fn record(&self, record: UsageRecord) {
        let mut state = self.lock();
        self.write_record(&mut state, &record);
    }

    /// Writes out pending lines and fsyncs them (unless [`Fsync::Never`]), and rotates a file
    /// that has grown too old.
    fn flush(&self) {
        let mut state = self.lock();
        if state.file.is_some() && self.rotation_due(&state, 0) {
            if let Err(error) = self.rotate(&mut state) {
                self.warn(&mut state, "rotating", &error);
            }
            return;
        }
        let result = match self.config.fsync {
            Fsync::Never => self.write_out(&mut state),
            Fsync::EveryRecord | Fsync::Interval(_) => self.sync(&mut state),
        };
        if let Err(error) = result {
            self.warn(&mut state, "flushing", &error);
        }
    }
}

impl Drop for JsonLinesFile {
    fn drop(&mut self) {
        // Whatever the policy: a clean shutdown loses nothing.
        let mut state = self.lock();
        if let Err(error) = self.sync(&mut state) {
            self.warn(&mut state, "syncing at close", &error);
        }
    }
}

impl FileState {
    fn closed() -> Self {
        FileState {
            file: None,
            pending: Vec::new(),
            pending_records: 0,
            size: 0,
            started: SystemTime::now(),
            unsynced: false,
            last_sync: Instant::now(),
            last_warning: None,
        }
    }
}

impl fmt::Debug for JsonLinesFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesFile")
            .field("path", &self.config.path)
            .field("max_bytes", &self.config.max_bytes)
            .field("rotate_every", &self.config.rotate_every)
            .field("fsync", &self.config.fsync)
            .field("failed", &self.failed())
            .finish()
    }
}

/// Configures a [`JsonLinesFile`]; [`open`](JsonLinesFileBuilder::open) opens it.
///
/// ```
/// use tollgate_balance::{Fsync, JsonLinesFile};
///
/// # let dir = std::env::temp_dir().join(format!("tollgate-doc-fb-{}", std::process::id()));
/// let file = JsonLinesFile::builder(&dir).rotate_every(None).fsync(Fsync::Never).open()?;
/// # drop(file);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct JsonLinesFileBuilder {
    dir: PathBuf,
    name: String,
    max_bytes: u64,
    rotate_every: Option<Duration>,
    fsync: Fsync,
}

impl JsonLinesFileBuilder {
    /// The file's name without `.jsonl` (`usage` by default): a single path component.
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-name-{}", std::process::id()));
    /// let file = JsonLinesFile::builder(&dir).name("eu-billing").open()?;
    /// assert_eq!(file.path(), dir.join("eu-billing.jsonl"));
    /// assert!(JsonLinesFile::builder(&dir).name("../elsewhere").open().is_err());
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Rotates before a record would take the file past this many bytes (64 MiB by default).
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-max-{}", std::process::id()));
    /// let file = JsonLinesFile::builder(&dir).max_bytes(1024 * 1024).open()?;
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Rotates a file this long after it was started (1 hour by default; `None`: by size
    /// only).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-every-{}", std::process::id()));
    /// let file = JsonLinesFile::builder(&dir)
    ///     .rotate_every(Some(Duration::from_secs(24 * 60 * 60)))
    ///     .open()?;
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn rotate_every(mut self, every: Option<Duration>) -> Self {
        self.rotate_every = every;
        self
    }

    /// When records are fsynced ([`Fsync::Interval`] of 1 s by default).
    ///
    /// ```
    /// use tollgate_balance::{Fsync, JsonLinesFile};
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-policy-{}", std::process::id()));
    /// let file = JsonLinesFile::builder(&dir).fsync(Fsync::EveryRecord).open()?;
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fsync(mut self, policy: Fsync) -> Self {
        self.fsync = policy;
        self
    }

    /// Creates the directory if need be and opens `<name>.jsonl` for appending.
    ///
    /// # Errors
    ///
    /// When the name is not a single path component, or the directory or file cannot be
    /// created or opened.
    ///
    /// ```
    /// use tollgate_balance::JsonLinesFile;
    ///
    /// # let dir = std::env::temp_dir().join(format!("tollgate-doc-fbopen-{}", std::process::id()));
    /// let file = JsonLinesFile::builder(dir.join("nested")).open()?;
    /// assert!(dir.join("nested/usage.jsonl").exists());
    /// # drop(file);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn open(self) -> io::Result<JsonLinesFile> {
        let mut components = Path::new(&self.name).components();
        if !matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("usage file name {:?} is not a single file name", self.name),
            ));
        }
        let path = self.dir.join(format!("{}.jsonl", self.name));
        let sink = JsonLinesFile {
            config: FileConfig {
                dir: self.dir,
                name: self.name,
                path,
                max_bytes: self.max_bytes,
                rotate_every: self.rotate_every,
                fsync: self.fsync,
            },
            state: Mutex::new(FileState::closed()),
            failed: AtomicU64::new(0),
        };
        {
            let mut state = sink.lock();
            sink.reopen(&mut state)?;
        }
        Ok(sink)
    }
}
