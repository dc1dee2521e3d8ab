//! Embedded status expiry against the rate statuses are written (issue 18,
//! item 7: expiry must keep up with the pipeline). Writes N statuses through
//! the queue's writer as fast as it takes them (the most the pipeline could
//! ever write: far above delivery's default 100 messages/s), then lets them
//! all expire and times how long the writer's expiry takes to remove them
//! with no other request arriving. Prints both rates and their ratio.
//! Run with `cargo bench --bench status_expiry` (N: `EXPIRY_BENCH_N`,
//! default 100 000).

use std::time::{Duration, Instant};

use herald::embedded::EmbeddedQueue;
use herald::status::{Entry, MessageInfo, Status, Update};

fn update(i: usize) -> Update {
    Update::Message {
        info: MessageInfo {
            id: format!("bench-{i:08}"),
            api_key_id: "bench".into(),
            tenant: "default".into(),
            channel: "whatsapp".into(),
            to: "+14155550123".into(),
            callback_data: None,
            accepted_at_ms: 0,
            fallback: None,
            scheduled_for_ms: None,
            batch_id: None,
            from: None,
            sms_segments: 0,
        },
        status: Status::Submitted,
        entry: Entry::on("whatsapp", 0).by_attempt(1),
        provider_message_id: Some(format!("wamid.bench-{i:08}")),
    }
}

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): then a
    // small run, enough to check that it works.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("EXPIRY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 100_000 } else { 5_000 });
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let queue = EmbeddedQueue::open(dir.path(), 0).expect("the queue opens");
        queue.configure_statuses(Duration::from_secs(86_400), false);

        // Writes in commits of 100, 8 in flight, as the worker's settles come.
        let started = Instant::now();
        let mut pending = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let q = queue.clone();
            let updates: Vec<Update> = chunk.iter().map(|i| update(*i)).collect();
            pending.push(tokio::spawn(async move { q.record_statuses(updates, vec![]).await }));
            if pending.len() == 8 {
                for p in pending.drain(..) {
                    p.await.expect("joins").expect("writes");
                }
            }
        }
        for p in pending {
            p.await.expect("joins").expect("writes");
        }
        let write_rate = n as f64 / started.elapsed().as_secs_f64();

        // Everything expires now; the timer alone drives expiry.
        queue.configure_statuses(Duration::from_millis(1), false);
        let started = Instant::now();
        let last = format!("bench-{:08}", n - 1);
        let mut checks = 0;
        while queue.status(&last, &herald::status::Scope::Admin).await.expect("reads").is_some() {
            checks += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(started.elapsed() < Duration::from_secs(600), "expiry stalled");
        }
        let expiry_rate = n as f64 / started.elapsed().as_secs_f64();
        println!("statuses: {n}");
        println!("write rate (writer saturated): {write_rate:.0} statuses/s");
        println!(
            "expiry rate (timer-driven, {checks} polls): {expiry_rate:.0} statuses/s (each status: one statuses row and one provider_ids row)"
        );
        println!(
            "expiry / saturated write rate: {:.2}; expiry / default delivery rate (100/s): {:.0}x",
            expiry_rate / write_rate,
            expiry_rate / 100.0
        );
    });
}
