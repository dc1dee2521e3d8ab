//! A burst of scheduled messages in the embedded default: N envelopes
//! (default 100 000, `SCHEDULE_BENCH_N`) scheduled for the same second T.
//!
//! 1. Lease cost for unscheduled traffic, with and without the N scheduled
//!    envelopes waiting in the table: `lease(k=50)` timed over 200 calls
//!    each (a ratio near 1: the waiting rows cost the lease nothing).
//! 2. At T, the queue's release of the burst: a loop leases as the worker
//!    does (1 000 at a time, each lease's envelopes settled as delivered
//!    while the next lease runs) and notes, for every envelope, how long
//!    after T it was leased, which is when the worker hands it to the
//!    pipeline and its pacer. (Settling after the burst instead makes each
//!    lease step over the rows leased before it, all due at the same
//!    instant: slower. Moving a leased row's due time to its lease's end
//!    avoids that, at +71 % on every lease of unscheduled traffic, measured
//!    with `lease_cost`: not worth it.) Printed: how
//!    long after T the first and the last were leased, the lateness
//!    percentiles and the release rate. Pacing is not part of this: after
//!    the hand-over each number's pacer sends at its cap (message k waits
//!    k / cap), which the delivery benches measure.
//!
//! The worker itself polls an idle queue every 200 ms (`IDLE_POLL`), which
//! adds up to that to the first lease; the loop here polls every 5 ms.
//!
//! Run with `cargo bench --bench schedule_burst`; to keep the figures:
//! `cargo bench --bench schedule_burst | tee bench/results/<date>-schedule-burst.txt`.

mod queue;

use std::time::{Duration, Instant};

use chrono::Utc;
use herald::contract::Envelope;
use herald::embedded::EmbeddedQueue;
use queue::{LEASE_MS, fill, message, micros, percentile, settle_all, time_leases};
use tokio::task::JoinSet;

/// Envelopes due at `due_ms` (now when `None`).
fn due_at(due_ms: Option<i64>) -> impl Fn(usize) -> Envelope {
    let mut template = message();
    template.send_at_ms = due_ms;
    move |_| Envelope::new(uuid::Uuid::now_v7(), template.clone(), "bench")
}

/// The worker's largest lease.
const RELEASE_K: usize = 1000;
const UNSCHEDULED: usize = 30_000;
const K: usize = 50;
const CALLS: usize = 200;

/// Leases everything due until `n` envelopes have come, as the worker
/// does; each envelope's lateness after `due_ms`, in ms, sorted.
async fn release(queue: &EmbeddedQueue, n: usize, due_ms: i64) -> Vec<i64> {
    let mut lateness = Vec::with_capacity(n);
    let mut settling = JoinSet::new();
    while lateness.len() < n {
        let leased = queue.lease(LEASE_MS, RELEASE_K).await.expect("leases");
        let now = Utc::now().timestamp_millis();
        if leased.is_empty() {
            assert!(now < due_ms + 60_000, "the burst did not come due");
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        assert!(now >= due_ms, "an envelope was leased before its time");
        lateness.extend(std::iter::repeat_n(now - due_ms, leased.len()));
        let queue = queue.clone();
        settling.spawn(async move { settle_all(&queue, leased).await });
    }
    while let Some(done) = settling.join_next().await {
        done.expect("joins");
    }
    lateness.sort_unstable();
    lateness
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SCHEDULE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 100_000 } else { 2_000 });
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let queue = EmbeddedQueue::open(dir.path(), 0).expect("the queue opens");
        println!(
            "Herald scheduled burst: N = {n} envelopes due in the same second, {UNSCHEDULED} unscheduled, {} CPUs",
            std::thread::available_parallelism().map_or(0, usize::from)
        );
        fill(&queue, UNSCHEDULED, due_at(None)).await;
        let without = time_leases(&queue, K, CALLS).await;
        // Due well after the fill and the second measurement end.
        let due_ms = Utc::now().timestamp_millis() + 20_000 + (n as i64) / 5;
        let rate = fill(&queue, n, due_at(Some(due_ms))).await;
        println!("scheduled enqueue: {rate:.0} envelopes/s");

        let with = time_leases(&queue, K, CALLS).await;
        for (name, times) in [("without", &without), ("with", &with)] {
            println!(
                "lease k={K}, {name} the burst waiting: median {:.1} us, p99 {:.1} us",
                micros(percentile(times, 50.0)),
                micros(percentile(times, 99.0))
            );
        }
        println!(
            "lease cost with / without the burst waiting: median x{:.2}, p99 x{:.2}",
            micros(percentile(&with, 50.0)) / micros(percentile(&without, 50.0)),
            micros(percentile(&with, 99.0)) / micros(percentile(&without, 99.0))
        );
        // The unscheduled envelopes left go first, as they are due now.
        let left = UNSCHEDULED - (CALLS + queue::WARM_UP) * K * 2;
        settle_all(&queue, queue.lease(LEASE_MS, left).await.expect("leases")).await;
        assert!(Utc::now().timestamp_millis() < due_ms, "the burst came due too early");
        let started = Instant::now();
        let lateness = release(&queue, n, due_ms).await;
        let took = started.elapsed().as_secs_f64();
        println!(
            "burst released: first leased {} ms after its time, last {} ms; lateness p50 {} ms, p90 {} ms, p99 {} ms",
            lateness[0],
            lateness[n - 1],
            percentile(&lateness, 50.0),
            percentile(&lateness, 90.0),
            percentile(&lateness, 99.0)
        );
        println!(
            "release rate: {:.0} envelopes/s ({n} in {:.2} s from the time the loop started waiting)",
            n as f64 / (lateness[n - 1].max(1) as f64 / 1000.0),
            took
        );
        println!(
            "all handed over within 1 s of their time: {}",
            lateness[n - 1] <= 1000
        );
    });
}
