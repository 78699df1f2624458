//! What the concurrency tests share.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Waits until `count` of `tasks` have finished (the refused ones, while the admitted ones wait
/// at a closed upstream), at most 10 s: every request has been decided before any settles,
/// however slow the machine. Too few finishing is left for the caller's counts to report.
pub async fn decided<T>(tasks: &[JoinHandle<T>], count: usize) {
    let since = Instant::now();
    while tasks.iter().filter(|task| task.is_finished()).count() < count
        && since.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
