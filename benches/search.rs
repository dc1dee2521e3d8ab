//! `GET /api/v1/messages` and `GET /api/v1/stats` over 1,000,000 stored
//! messages in the embedded default (`SEARCH_BENCH_N` to change it).
//!
//! The store is filled as the gateway fills it: each message enqueued
//! (its search row and its `accepted` count written in the enqueue's
//! transaction), accepted over the last 24 hours, to one of 100,000
//! numbers, one in ten in a batch of 1,000, one in five by SMS; then a
//! third of them get a status as the consumer and webhooks record it
//! (submitted, delivered, read; one in twenty failed with a code), which
//! moves their counts. Then each query is timed 300 times through the
//! queue's API plus the views' JSON (what the route does; HTTP excluded),
//! and p50/p99 printed with p99 as a ratio of the 50 ms target.
//!
//! Run with `cargo bench --bench search`; to keep the figures:
//! `cargo bench --bench search | tee bench/results/<date>-search.txt`.

// Only the filling and the percentiles are used here.
#[allow(dead_code)]
mod queue;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald::contract::Envelope;
use herald::domain::OutboundMessage;
use herald::embedded::EmbeddedQueue;
use herald::search::{Counts, Filters, Owner, Search, StatsQuery};
use herald::status::{Entry, ErrorCode, MessageInfo, Status, StatusError, Update};
use queue::{fill, percentile};
use serde_json::json;

/// Calls timed per query: 300 (5 in a test run).
static CALLS: AtomicUsize = AtomicUsize::new(300);

fn calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}
const DAY_MS: i64 = 86_400_000;
const NUMBERS: usize = 100_000;
const TARGET_MS: f64 = 50.0;

fn number(i: usize) -> String {
    format!("+1415{:07}", i % NUMBERS)
}

fn envelope(i: usize, n: usize, start_ms: i64) -> Envelope {
    let sms = i.is_multiple_of(5);
    let mut body = json!({"to": number(i), "message": "Your order has shipped"});
    if sms {
        body["channel"] = json!("sms");
    }
    let message = OutboundMessage::try_from(body).expect("a valid message");
    // The same id for the same i: the statuses recorded later find their message.
    let id = uuid::Uuid::from_u128((7u128 << 76) | (2u128 << 62) | i as u128);
    let mut e = Envelope::new(id, message, "bench");
    let at = start_ms + (i as i64) * DAY_MS / n as i64;
    e.accepted_at = chrono::DateTime::from_timestamp_millis(at).unwrap();
    if i.is_multiple_of(10) {
        e.batch_id = Some(format!("batch-{}", i / 10_000));
    }
    e
}

/// The status a third of the messages reach (none for the others).
fn update(e: &Envelope, i: usize) -> Option<Update> {
    let status = match i % 30 {
        0 => Status::Failed,
        1..=4 => Status::Submitted,
        5..=7 => Status::Delivered,
        8 | 9 => Status::Read,
        _ => return None,
    };
    let channel = e.channel.as_str();
    let mut entry = Entry::on(channel, e.accepted_at.timestamp_millis() + 1000).by_attempt(1);
    if status == Status::Failed {
        entry.error = Some(StatusError {
            code: Some(ErrorCode::Number(131_026)),
            title: "Message undeliverable".into(),
            channel: channel.into(),
            class: None,
        });
    }
    Some(Update::Message {
        info: MessageInfo::of(e),
        status,
        entry,
        provider_message_id: Some(format!("wamid.{i}")),
    })
}

async fn store(n: usize) -> (EmbeddedQueue, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    queue.configure_statuses(Duration::from_secs(30 * 86_400), false);
    let start = herald::clock::now_ms() - DAY_MS;
    let started = Instant::now();
    let rate = fill(&queue, n, |i| envelope(i, n, start)).await;
    println!(
        "filled {n} messages in {:.1} s ({rate:.0}/s)",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut updates = Vec::new();
    let mut recorded = 0;
    for i in 0..n {
        if let Some(u) = update(&envelope(i, n, start), i) {
            updates.push(u);
        }
        if updates.len() == 2_000 || (i + 1 == n && !updates.is_empty()) {
            recorded += updates.len();
            queue
                .record_statuses(std::mem::take(&mut updates), vec![])
                .await
                .unwrap();
        }
    }
    println!(
        "recorded {recorded} statuses in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (queue, dir)
}

fn owner() -> Owner {
    Owner {
        tenant: "default".into(),
        api_key_id: Some("bench".into()),
    }
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99) = (ms(percentile(&times, 50.0)), ms(percentile(&times, 99.0)));
    println!(
        "{what:<44} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  p99/target {:.3}",
        p99 / TARGET_MS
    );
}

async fn time_search(queue: &EmbeddedQueue, what: &str, filters: impl Fn(usize) -> Filters) {
    let mut times = Vec::with_capacity(calls());
    for call in 0..calls() {
        let search = Search {
            owner: owner(),
            filters: filters(call),
            limit: 100,
            asked_by: "bench".into(),
            after: None,
        };
        let started = Instant::now();
        let found = queue.search(&search).await.unwrap();
        let body =
            json!({"messages": found.records.iter().map(|r| r.to_view()).collect::<Vec<_>>()});
        std::hint::black_box(body.to_string());
        times.push(started.elapsed());
    }
    report(what, times);
}

/// Pages through by cursor: each page after the previous one's last row.
async fn time_paging(queue: &EmbeddedQueue) {
    let mut times = Vec::with_capacity(calls());
    let mut after = None;
    for _ in 0..calls() {
        let search = Search {
            owner: owner(),
            filters: Filters::default(),
            limit: 100,
            asked_by: "bench".into(),
            after: after.clone(),
        };
        let started = Instant::now();
        let found = queue.search(&search).await.unwrap();
        let views: Vec<_> = found.records.iter().map(|r| r.to_view()).collect();
        std::hint::black_box(views);
        times.push(started.elapsed());
        after = found.next;
    }
    report("no filter, pages 1-300 by cursor", times);
}

async fn time_stats(queue: &EmbeddedQueue, what: &str, bucket_ms: Option<i64>) {
    let now = herald::clock::now_ms();
    let query = StatsQuery {
        owner: owner(),
        since_ms: herald::search::minute_of(now - DAY_MS),
        until_ms: herald::search::minute_of(now) + 60_000,
        channel: None,
        bucket_ms,
    };
    let mut times = Vec::with_capacity(calls());
    let mut total = 0;
    for _ in 0..calls() {
        let started = Instant::now();
        let buckets = queue.counts(&query).await.unwrap();
        let body = Counts::sum(&query, &buckets).to_json();
        total = body["byStatus"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum();
        std::hint::black_box(body.to_string());
        times.push(started.elapsed());
    }
    report(&format!("{what} (counts {total})"), times);
}

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): then a
    // small run, enough to check that it works.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SEARCH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 3_000 });
    if !benching {
        CALLS.store(5, Ordering::Relaxed);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (queue, _dir) = store(n).await;
        println!(
            "GET /api/v1/messages, a page of 100 over {n} messages, {} calls each:",
            calls()
        );
        time_search(&queue, "no filter", |_| Filters::default()).await;
        time_paging(&queue).await;
        time_search(&queue, "to (10 messages per number)", |c| Filters {
            to: Some(number(c * 7)),
            ..Filters::default()
        })
        .await;
        time_search(&queue, "status=failed (1 in 30)", |_| Filters {
            status: Some(Status::Failed),
            ..Filters::default()
        })
        .await;
        time_search(&queue, "channel=sms (1 in 5)", |_| Filters {
            channel: Some("sms".into()),
            ..Filters::default()
        })
        .await;
        time_search(&queue, "batchId (1,000 per batch)", |c| Filters {
            batch_id: Some(format!("batch-{}", c % 100)),
            ..Filters::default()
        })
        .await;
        let start = herald::clock::now_ms() - DAY_MS;
        time_search(&queue, "since/until: one hour, mid-day", |_| Filters {
            since_ms: Some(start + 12 * 3_600_000),
            until_ms: Some(start + 13 * 3_600_000),
            ..Filters::default()
        })
        .await;
        time_search(&queue, "status=delivered & channel=sms", |_| Filters {
            status: Some(Status::Delivered),
            channel: Some("sms".into()),
            ..Filters::default()
        })
        .await;
        println!(
            "GET /api/v1/stats over the day of {n} messages, {} calls each:",
            calls()
        );
        time_stats(&queue, "totals", None).await;
        time_stats(&queue, "granularity=hour", Some(3_600_000)).await;
        time_stats(&queue, "granularity=minute", Some(60_000)).await;
    });
}
