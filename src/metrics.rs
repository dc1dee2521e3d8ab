//! Prometheus metrics: the `metrics` facade, with its Prometheus exporter
//! rendering `GET /metrics` on the gateway and on the SQS poller's
//! `METRICS_PORT`. Until [`install`] runs (tests driving the
//! router alone, `METRICS=off`) every call here is a no-op.
//!
//! Names start with `herald_`. Labels come from closed sets only — route
//! templates, HTTP statuses, channel names, outcomes, provider codes,
//! webhook sources, statuses — never a phone number, key, message id or
//! other unbounded value.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::contract::Channel;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Deliveries since the last flush, by (channel, outcome): their count;
/// under (channel, [`CALLS`]) the provider calls' durations in ms (at most
/// [`EMF_MAX_VALUES`] kept); for CloudWatch Embedded Metric Format under
/// Lambda. `None` until [`enable_emf`].
type EmfBuffer = BTreeMap<(&'static str, &'static str), (u64, Vec<f64>)>;
static EMF: OnceLock<Mutex<EmfBuffer>> = OnceLock::new();
/// EMF takes at most 100 values per metric per document.
const EMF_MAX_VALUES: usize = 100;

/// Latency buckets, seconds: 100 µs to 10 s.
const SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
/// Sizes of a publish batch (SNS `PublishBatch` takes 10).
const SIZES: [f64; 6] = [1.0, 2.0, 4.0, 6.0, 8.0, 10.0];

/// Installs the process's recorder once and returns its handle; `None` when
/// another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &SECONDS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            "herald_publish_batch_size".into(),
                        ),
                        &SIZES,
                    )
                })
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            start_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// How often recorded histogram values are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Folds histogram values into their buckets every [`UPKEEP_EVERY`]. The
/// exporter keeps every value recorded until then (8 bytes per request per
/// histogram), and `build_recorder` starts no task to fold them: without one
/// they were only folded by a scrape, so memory grew with the traffic between
/// scrapes, and for ever with none. Runs on the Tokio runtime that installs
/// the recorder (the gateway's, the poller's), else on a thread of its own.
/// What `/metrics` shows is the same either way.
fn start_upkeep(handle: PrometheusHandle) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let mut every = tokio::time::interval(UPKEEP_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            });
        }
        Err(_) => {
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        handle.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error.message = %e, "cannot start the metrics upkeep thread: histogram values are folded at each scrape only");
            }
        }
    }
}

/// The exposition text, or `None` when no recorder is installed.
pub fn render() -> Option<String> {
    HANDLE.get()?.as_ref().map(PrometheusHandle::render)
}

/// Handles of the per-request series, by route template, kept per thread:
/// the request path then costs two map lookups and two atomic updates, not
/// a registry lookup with allocated labels (measured: `bench/metrics_cost.py`).
/// Bounded: routes are the router's templates (and `unmatched`), statuses
/// the few HTTP statuses Herald answers.
type RequestSeries = HashMap<String, (Histogram, HashMap<u16, Counter>)>;

thread_local! {
    static REQUESTS: RefCell<RequestSeries> = RefCell::new(HashMap::new());
    static PUBLISHES: RefCell<HashMap<&'static str, (Counter, Histogram)>> = RefCell::new(HashMap::new());
}

/// One HTTP request: its route template (`unmatched` for no route), status and duration.
pub fn request(route: &str, status: u16, seconds: f64) {
    if HANDLE.get().is_none() {
        return;
    }
    REQUESTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        // One lookup per request once the route is known (a second only on
        // its first request).
        let record = |(duration, counts): &mut (Histogram, HashMap<u16, Counter>)| {
            duration.record(seconds);
            counts
                .entry(status)
                .or_insert_with(|| {
                    counter!("herald_http_requests_total", "route" => route.to_owned(), "status" => status.to_string())
                })
                .increment(1);
        };
        if let Some(series) = cache.get_mut(route) {
            return record(series);
        }
        let duration = histogram!("herald_http_request_duration_seconds", "route" => route.to_owned());
        record(
            cache
                .entry(route.to_owned())
                .or_insert((duration, HashMap::new())),
        );
    });
}

/// One publish to the queue: `outcome` `ok` or the error kind.
pub fn publish(outcome: &'static str, seconds: f64) {
    if HANDLE.get().is_none() {
        return;
    }
    PUBLISHES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (count, duration) = cache.entry(outcome).or_insert_with(|| {
            (
                counter!("herald_publishes_total", "outcome" => outcome),
                histogram!("herald_publish_duration_seconds"),
            )
        });
        count.increment(1);
        duration.record(seconds);
    });
}

/// The size of one SNS `PublishBatch` call.
pub fn publish_batch(size: usize) {
    histogram!("herald_publish_batch_size").record(size as f64);
}

/// The `code` label of a provider error code: the code itself when the
/// channel documents it (`known`), else `other`, so a provider or a proxy
/// answering with arbitrary numbers cannot grow the series.
fn code_label(code: Option<i64>, known: bool) -> String {
    match code {
        None => "none".to_owned(),
        Some(c) if known => c.to_string(),
        Some(_) => "other".to_owned(),
    }
}

/// One delivery decision of `tenant` (a label bounded by `TENANTS_FILE`:
/// the gateway writes no other tenant into an envelope): its channel,
/// outcome (the decision's action) and provider code (`none` without one;
/// `other` for a code the channel does not document, see
/// `Channel::knows_code`).
pub fn delivery(
    tenant: &str,
    channel: &'static str,
    outcome: &'static str,
    (code, known_code): (Option<i64>, bool),
) {
    let code = code_label(code, known_code);
    counter!("herald_deliveries_total", "tenant" => tenant.to_owned(), "channel" => channel, "outcome" => outcome, "code" => code)
        .increment(1);
    if let Some(buffer) = EMF.get() {
        let mut buffer = buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        buffer.entry((channel, outcome)).or_default().0 += 1;
    }
}

/// A message of `tenant` (from `TENANTS_FILE`, never a key or a number)
/// accepted for `channel`.
pub fn accepted(tenant: &str, channel: &'static str) {
    counter!("herald_messages_accepted_total", "tenant" => tenant.to_owned(), "channel" => channel)
        .increment(1);
}

/// One write of the fleet's shared state in DynamoDB: `item` is `keys`,
/// `pace`, `pairs` or `circuit`; `outcome` `ok`, `conflict` (a conditional
/// write that lost: it costs a write unit too) or `error`.
pub fn fleet_write(item: &'static str, outcome: &'static str) {
    counter!("herald_fleet_writes_total", "item" => item, "outcome" => outcome).increment(1);
}

/// One provider call: how long the provider took (pacing waits excluded).
pub fn provider_call(channel: &'static str, seconds: f64) {
    histogram!("herald_delivery_duration_seconds", "channel" => channel).record(seconds);
    if let Some(buffer) = EMF.get() {
        let mut buffer = buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let values = &mut buffer.entry((channel, CALLS)).or_default().1;
        if values.len() < EMF_MAX_VALUES {
            values.push(seconds * 1000.0);
        }
    }
}

/// The EMF buffer's key for a channel's call durations.
const CALLS: &str = "call";

/// Collects delivery metrics for [`take_emf`] (the consumer under Lambda,
/// where no one scrapes `/metrics`).
pub fn enable_emf() {
    EMF.get_or_init(Mutex::default);
}

/// The deliveries since the last call as CloudWatch Embedded Metric Format
/// documents, one JSON line per (channel, outcome): metrics `Deliveries`
/// (count) and `DeliveryDuration` (ms) in namespace `Herald`, dimensions
/// `channel` and `outcome`. Empty when nothing was delivered or EMF is off.
pub fn take_emf(now_ms: i64) -> Vec<String> {
    let Some(buffer) = EMF.get() else {
        return Vec::new();
    };
    let taken = std::mem::take(
        &mut *buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let durations: BTreeMap<&str, Vec<f64>> = taken
        .iter()
        .filter(|((_, outcome), _)| *outcome == CALLS)
        .map(|((channel, _), (_, values))| (*channel, values.clone()))
        .collect();
    let mut with_durations = std::collections::HashSet::new();
    taken
        .into_iter()
        .filter(|((_, outcome), _)| *outcome != CALLS)
        .map(|((channel, outcome), (count, _))| {
            // A channel's call durations go with its first outcome's document.
            let durations = if with_durations.insert(channel) {
                durations.get(channel).cloned().unwrap_or_default()
            } else {
                Vec::new()
            };
            serde_json::json!({
                "_aws": {
                    "Timestamp": now_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": "Herald",
                        "Dimensions": [["channel", "outcome"]],
                        "Metrics": [
                            {"Name": "Deliveries", "Unit": "Count"},
                            {"Name": "DeliveryDuration", "Unit": "Milliseconds"}
                        ]
                    }]
                },
                "channel": channel,
                "outcome": outcome,
                "Deliveries": count,
                "DeliveryDuration": durations,
            })
            .to_string()
        })
        .collect()
}

/// Reports and messages one webhook delivery carried: by source and what
/// became of them (`recorded`, `skipped`, or the refusal's code).
pub fn webhook(source: &'static str, outcome: &'static str, count: usize) {
    counter!("herald_webhook_reports_total", "source" => source, "outcome" => outcome)
        .increment(count as u64);
}

/// Counts made inside a database transaction wait here (per thread: the
/// embedded queue's writer) until it commits, so a transaction that rolls
/// back and is retried counts once.
#[derive(Clone, Copy)]
enum Pending {
    Transition(&'static str, &'static str),
    OptOut(&'static str),
}

thread_local! {
    static IN_TRANSACTION: RefCell<Option<Vec<Pending>>> = const { RefCell::new(None) };
}

/// Starts holding this thread's transition and opt-out counts back.
pub fn begin_transaction() {
    IN_TRANSACTION.with(|t| *t.borrow_mut() = Some(Vec::new()));
}

/// Ends the hold: counts what was held when `committed`, forgets it otherwise.
pub fn end_transaction(committed: bool) {
    let held = IN_TRANSACTION
        .with(|t| t.borrow_mut().take())
        .unwrap_or_default();
    if committed {
        held.into_iter().for_each(count);
    }
}

/// Counts now, or holds the count when a transaction is open on this thread.
fn record(pending: Pending) {
    let now = IN_TRANSACTION.with(|t| match t.borrow_mut().as_mut() {
        Some(held) => {
            held.push(pending);
            None
        }
        None => Some(pending),
    });
    if let Some(pending) = now {
        count(pending);
    }
}

fn count(pending: Pending) {
    match pending {
        Pending::Transition(channel, status) => {
            counter!("herald_status_transitions_total", "channel" => channel, "status" => status)
                .increment(1);
        }
        Pending::OptOut(source) => {
            counter!("herald_opt_out_changes_total", "source" => source).increment(1);
        }
    }
}

/// A message's current status changed to `status` on `channel`.
pub fn status_transition(channel: &str, status: &'static str) {
    let channel = Channel::from_name(channel).map_or("other", Channel::as_str);
    record(Pending::Transition(channel, status));
}

/// An opt-out changed, by what changed it (`api`, `inbound-sms`, `inbound-whatsapp`).
pub fn opt_out_change(source: &str) {
    let source = match source {
        "api" => "api",
        _ => Channel::ALL
            .into_iter()
            .map(Channel::inbound_source)
            .find(|s| *s == source)
            .unwrap_or("other"),
    };
    record(Pending::OptOut(source));
}

/// A message kept in the schedule (SNS mode) until it is due.
pub fn scheduled(channel: &'static str) {
    counter!("herald_scheduled_total", "channel" => channel).increment(1);
}

/// How late a scheduled message came to its first delivery attempt (the
/// pacer's wait after that is not lateness).
pub fn schedule_lateness(seconds: f64) {
    histogram!("herald_schedule_lateness_seconds").record(seconds);
}

/// Scheduled messages waiting for their time (embedded), set at each scrape.
pub fn scheduled_waiting(count: f64) {
    gauge!("herald_scheduled_waiting").set(count);
}

/// The embedded queue's figures, set at each scrape.
pub fn queue(depth: f64, oldest_age_seconds: f64, dead_letters: f64) {
    gauge!("herald_queue_depth").set(depth);
    gauge!("herald_queue_oldest_age_seconds").set(oldest_age_seconds);
    gauge!("herald_dead_letters").set(dead_letters);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_documents_count_deliveries_by_channel_and_outcome() {
        enable_emf();
        take_emf(0);
        for seconds in [0.120, 0.080] {
            provider_call("whatsapp", seconds);
            delivery("default", "whatsapp", "delivered", (None, true));
        }
        provider_call("sms", 0.050);
        delivery("default", "sms", "failed", (Some(6), true));
        let lines = take_emf(1_700_000_000_000);
        let docs: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        let wa = docs.iter().find(|d| d["channel"] == "whatsapp").unwrap();
        assert_eq!(wa["outcome"], "delivered");
        assert_eq!(wa["Deliveries"], 2);
        assert_eq!(wa["DeliveryDuration"].as_array().unwrap().len(), 2);
        assert_eq!(wa["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Herald");
        assert_eq!(wa["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert!(take_emf(0).is_empty(), "a flush empties the buffer");
        assert_eq!(code_label(Some(131_026), true), "131026");
        assert_eq!(code_label(Some(987_654_321), false), "other");
        assert_eq!(code_label(None, false), "none");
    }
}
