//! The in-memory backends pass the conformance suite that the Redis ones run too.

use std::time::Duration;

use tollgate_balance::{InMemoryCapStore, InMemoryLedger};
use tollgate_ratelimit::GovernorBackend;
use tollgate_testkit::conformance;

#[tokio::test]
async fn the_governor_backend_conforms() {
    conformance::rate_limit_backend(&GovernorBackend::new()).await;
}

#[tokio::test]
async fn the_in_memory_ledger_conforms() {
    let ttl = Duration::from_millis(200);
    conformance::ledger(&InMemoryLedger::with_reservation_ttl(ttl), ttl).await;
}

#[tokio::test]
async fn the_in_memory_cap_store_conforms() {
    let ttl = Duration::from_millis(200);
    conformance::caps(&InMemoryCapStore::with_reservation_ttl(ttl), ttl).await;
}
