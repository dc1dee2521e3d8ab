//! What the embedded queue's benchmarks share (`lease_cost`,
//! `schedule_burst`): filling a queue, settling what was leased, timing
//! leases, and percentiles.

use std::time::{Duration, Instant};

use herald::contract::Envelope;
use herald::domain::OutboundMessage;
use herald::embedded::{EmbeddedQueue, Leased, Settlement};
use tokio::task::JoinSet;

/// Enqueues in flight at once: several of the writer's commits (1 024 each).
pub const CHUNK: usize = 4096;
/// The lease the benchmarks take.
pub const LEASE_MS: i64 = 300_000;
/// Untimed leases before the timed ones.
pub const WARM_UP: usize = 10;

/// A text message to one recipient.
pub fn message() -> OutboundMessage {
    OutboundMessage::try_from(serde_json::json!({"to": "+14155550123", "message": "hi"}))
        .expect("a valid message")
}

/// Enqueues `count` envelopes, the i-th `envelope(i)`, `CHUNK` at a time
/// (so group commit applies). Returns envelopes per second.
pub async fn fill(
    queue: &EmbeddedQueue,
    count: usize,
    envelope: impl Fn(usize) -> Envelope,
) -> f64 {
    let started = Instant::now();
    let mut i = 0;
    while i < count {
        let mut chunk = JoinSet::new();
        for j in i..count.min(i + CHUNK) {
            let (queue, envelope) = (queue.clone(), envelope(j));
            chunk.spawn(async move { queue.enqueue(&envelope).await });
        }
        while let Some(done) = chunk.join_next().await {
            done.expect("joins").expect("enqueues");
        }
        i += CHUNK;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Settles every envelope in `leased` as delivered (concurrently: one commit).
pub async fn settle_all(queue: &EmbeddedQueue, leased: Vec<Leased>) {
    let mut settles = JoinSet::new();
    for envelope in leased {
        let queue = queue.clone();
        settles.spawn(async move { queue.settle(envelope.id, Settlement::Delivered).await });
    }
    while let Some(done) = settles.join_next().await {
        done.expect("joins").expect("settles");
    }
}

/// Times `calls` leases of `k` (after `WARM_UP` untimed), each settled
/// afterwards: every call's time, sorted.
pub async fn time_leases(queue: &EmbeddedQueue, k: usize, calls: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(calls);
    for call in 0..WARM_UP + calls {
        let started = Instant::now();
        let leased = queue.lease(LEASE_MS, k).await.expect("leases");
        let took = started.elapsed();
        assert_eq!(leased.len(), k, "the queue ran dry");
        if call >= WARM_UP {
            times.push(took);
        }
        settle_all(queue, leased).await;
    }
    times.sort();
    times
}

/// The `p`-th percentile of `sorted`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
