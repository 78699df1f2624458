//! Memory held by the in-memory backend for 1,000,000 distinct keys (resident set growth).

use std::sync::Arc;

use tollgate_core::Rate;
use tollgate_ratelimit::{Check, GovernorBackend, RateLimitBackend, RuleKey, Scope};

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let backend = GovernorBackend::new();
    let rate = Rate::per_minute(60).unwrap();
    // Key ids as a gateway holds them: shared strings owned by the principals.
    let ids: Vec<Arc<str>> = (0..1_000_000)
        .map(|n| Arc::from(format!("key_{n:012}")))
        .collect();
    let before = resident_bytes();
    for id in &ids {
        let check = Check {
            key: RuleKey::new(Scope::KeyRequests, Some(id.clone()), None),
            rate,
            cost: 1,
        };
        block_on(backend.check(&[check])).expect("the in-memory backend never fails");
    }
    let after = resident_bytes();
    let held = backend.len();
    println!(
        "governor backend: {held} keys held, resident set grew {:.1} MiB ({:.0} bytes per key, key strings excluded)",
        (after - before) as f64 / (1024.0 * 1024.0),
        (after - before) as f64 / held as f64
    );
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}
