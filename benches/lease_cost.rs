//! The embedded lease's cost with a deep queue spread over many tenants:
//! the fair lease (src/embedded/fair.rs) seeks each tenant's due envelopes
//! through the index `(tenant, priority, due_at)`, so its cost should not
//! grow with the queue, and only a little with the tenants.
//!
//! For each case it opens a queue in a temporary directory, enqueues N
//! envelopes (default 1 000 000, `LEASE_BENCH_N`) concurrently in chunks
//! (so group commit applies; the enqueue rate is printed), then times
//! `lease(300_000, k)` for k = 1 (2 000 calls) and k = 50 (200 calls),
//! settling what each call leased as delivered (untimed) so the queue keeps
//! its shape. Cases:
//! - 100 tenants, N envelopes round-robin over them
//! - 1 tenant, the same N
//! - 100 tenants, only one with due envelopes: 99 tenants hold one envelope
//!   each, leased out; the last holds the other N - 99
//!
//! Run with `cargo bench --bench lease_cost`; to keep the figures:
//! `cargo bench --bench lease_cost | tee bench/results/<date>-lease-cost.txt`.

use std::time::{Duration, Instant};

use herald::contract::Envelope;
use herald::domain::OutboundMessage;
use herald::embedded::{EmbeddedQueue, Leased, Settlement};
use tokio::task::JoinSet;

/// Enqueues in flight at once: several of the writer's commits (1 024 each).
const CHUNK: usize = 4096;
const LEASE_MS: i64 = 300_000;
/// (k, calls): envelopes per lease and how many leases are timed.
type Runs = [(usize, usize); 2];
const RUNS: Runs = [(1, 2000), (50, 200)];
/// Without `--bench` (`cargo test --all-targets`): enough to check it works.
const TEST_RUNS: Runs = [(1, 50), (50, 10)];
const WARM_UP: usize = 10;

/// One case's figures: the enqueue rate, then per k (median, p99) of a call.
struct Figures {
    enqueue_per_s: f64,
    calls: Vec<(usize, Duration, Duration)>,
}

fn message() -> OutboundMessage {
    OutboundMessage::try_from(serde_json::json!({"to": "+14155550123", "message": "hi"}))
        .expect("a valid message")
}

fn tenant(i: usize) -> String {
    format!("t{i:03}")
}

/// Enqueues `count` envelopes, the i-th for `tenant_of(i)`, `CHUNK` at a
/// time. Returns envelopes per second.
async fn fill(queue: &EmbeddedQueue, count: usize, tenant_of: impl Fn(usize) -> String) -> f64 {
    let template = message();
    let started = Instant::now();
    let mut i = 0;
    while i < count {
        let mut chunk = JoinSet::new();
        for j in i..count.min(i + CHUNK) {
            let envelope = Envelope::new(uuid::Uuid::now_v7(), template.clone(), "bench")
                .for_tenant(&tenant_of(j));
            let queue = queue.clone();
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
async fn settle_all(queue: &EmbeddedQueue, leased: Vec<Leased>) {
    let mut settles = JoinSet::new();
    for envelope in leased {
        let queue = queue.clone();
        settles.spawn(async move { queue.settle(envelope.id, Settlement::Delivered).await });
    }
    while let Some(done) = settles.join_next().await {
        done.expect("joins").expect("settles");
    }
}

/// Times `calls` leases of `k`, each settled afterwards; returns every call's time.
async fn time_leases(queue: &EmbeddedQueue, k: usize, calls: usize) -> Vec<Duration> {
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn measure(queue: &EmbeddedQueue, runs: Runs, enqueue_per_s: f64) -> Figures {
    let mut calls = Vec::new();
    for (k, n) in runs {
        let times = time_leases(queue, k, n).await;
        calls.push((k, percentile(&times, 50.0), percentile(&times, 99.0)));
    }
    Figures {
        enqueue_per_s,
        calls,
    }
}

/// N envelopes round-robin over `tenants` tenants.
async fn spread(n: usize, tenants: usize, runs: Runs) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let queue = EmbeddedQueue::open(dir.path(), 0).expect("the queue opens");
    let rate = fill(&queue, n, |i| tenant(i % tenants)).await;
    measure(&queue, runs, rate).await
}

/// 99 tenants with one envelope each, leased out; tenant t000 holds the rest.
async fn one_due(n: usize, runs: Runs) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let queue = EmbeddedQueue::open(dir.path(), 0).expect("the queue opens");
    fill(&queue, 99, |i| tenant(i + 1)).await;
    let held = queue.lease(3_600_000, 99).await.expect("leases");
    assert_eq!(held.len(), 99);
    let rate = fill(&queue, n - 99, |_| tenant(0)).await;
    measure(&queue, runs, rate).await
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_case(name: &str, f: &Figures) {
    println!("{name}: enqueue {:.0} envelopes/s", f.enqueue_per_s);
    for (k, median, p99) in &f.calls {
        println!(
            "  lease k={k:<3} median {:>8.1} us  p99 {:>8.1} us  per message (median) {:>7.1} us",
            micros(*median),
            micros(*p99),
            micros(*median) / *k as f64
        );
    }
}

fn print_ratios(name: &str, a: &Figures, b: &Figures) {
    for ((k, ma, pa), (_, mb, pb)) in a.calls.iter().zip(&b.calls) {
        println!(
            "{name}, k={k}: median x{:.2}, p99 x{:.2}",
            micros(*ma) / micros(*mb),
            micros(*pa) / micros(*pb)
        );
    }
}

fn header(n: usize, runs: Runs) {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map_or_else(
            || "unknown".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!(
        "Herald lease cost, Unix time {secs}, commit {commit}, {cpus} CPUs, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!(
        "N = {n} envelopes queued per case; lease(300 000 ms, k) timed through the queue's writer \
         (a transaction and its commit); k=1: {} calls, k=50: {} calls, {WARM_UP} warm-up calls each; \
         each call's envelopes settled as delivered, untimed",
        runs[0].1, runs[1].1
    );
}

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): then a
    // small run, enough to check that it works.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("LEASE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 5_000 });
    let runs = if benching { RUNS } else { TEST_RUNS };
    let needed = runs
        .iter()
        .map(|(k, calls)| k * (calls + WARM_UP))
        .sum::<usize>()
        + 99;
    assert!(n >= needed, "LEASE_BENCH_N must be at least {needed}");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        header(n, runs);
        let many = spread(n, 100, runs).await;
        print_case("100 tenants", &many);
        let one = spread(n, 1, runs).await;
        print_case("1 tenant", &one);
        let lone = one_due(n, runs).await;
        print_case("100 tenants, 1 with due envelopes (99 leased out)", &lone);
        print_ratios("100 tenants / 1 tenant", &many, &one);
        print_ratios("1 due of 100 / 1 tenant", &lone, &one);
    });
}
