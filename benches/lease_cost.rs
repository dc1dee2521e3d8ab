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

mod queue;

use std::time::Duration;

use herald::contract::Envelope;
use herald::embedded::EmbeddedQueue;
use queue::{WARM_UP, fill, message, micros, percentile, time_leases};

/// The i-th envelope of a fill, for `tenant_of(i)`.
fn for_tenant(tenant_of: impl Fn(usize) -> String) -> impl Fn(usize) -> Envelope {
    let template = message();
    move |i| {
        Envelope::new(uuid::Uuid::now_v7(), template.clone(), "bench").for_tenant(&tenant_of(i))
    }
}

/// (k, calls): envelopes per lease and how many leases are timed.
type Runs = [(usize, usize); 2];
const RUNS: Runs = [(1, 2000), (50, 200)];
/// Without `--bench` (`cargo test --all-targets`): enough to check it works.
const TEST_RUNS: Runs = [(1, 50), (50, 10)];

/// One case's figures: the enqueue rate, then per k (median, p99) of a call.
struct Figures {
    enqueue_per_s: f64,
    calls: Vec<(usize, Duration, Duration)>,
}

fn tenant(i: usize) -> String {
    format!("t{i:03}")
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
    let rate = fill(&queue, n, for_tenant(|i| tenant(i % tenants))).await;
    measure(&queue, runs, rate).await
}

/// 99 tenants with one envelope each, leased out; tenant t000 holds the rest.
async fn one_due(n: usize, runs: Runs) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let queue = EmbeddedQueue::open(dir.path(), 0).expect("the queue opens");
    fill(&queue, 99, for_tenant(|i| tenant(i + 1))).await;
    let held = queue.lease(3_600_000, 99).await.expect("leases");
    assert_eq!(held.len(), 99);
    let rate = fill(&queue, n - 99, for_tenant(|_| tenant(0))).await;
    measure(&queue, runs, rate).await
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
