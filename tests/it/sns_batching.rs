//! `PublishBatch` coalescing, against the scripted SNS sink in
//! `examples/support/sns_sink.rs` (moto cannot fail single batch entries, so this
//! wire-level fake plays SNS here; the rest of the SNS tests use moto).

use std::sync::Arc;
use std::time::Duration;

use herald::publisher::SnsPublisher;
use herald::publisher::sns::{BatchClient, LeanClient};
use serde_json::{Value, json};

use crate::helpers::{TO, TestApp, config_with};

#[allow(dead_code)]
#[path = "../../examples/support/sns_sink.rs"]
mod sns_sink;

/// A sink on a loopback port and a gateway publishing to it with `linger`.
/// Which `PublishBatch` client the gateway uses.
#[derive(Clone, Copy, Debug)]
enum Client {
    Sdk,
    Lean,
}

async fn gateway_with_sink(linger: Duration, which: Client) -> (Arc<TestApp>, Arc<sns_sink::Sink>) {
    gateway_with_sink_limited(
        linger,
        which,
        herald::publisher::sns::BatcherLimits::default(),
    )
    .await
}

async fn gateway_with_sink_limited(
    linger: Duration,
    which: Client,
    limits: herald::publisher::sns::BatcherLimits,
) -> (Arc<TestApp>, Arc<sns_sink::Sink>) {
    let sink = sns_sink::Sink::new(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, sns_sink::router(sink.clone())).into_future());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let client = aws_sdk_sns::Client::new(&config);
    let batch_client = match which {
        Client::Sdk => BatchClient::Sdk(client.clone()),
        Client::Lean => BatchClient::Lean(
            LeanClient::from_sdk_config(&config).expect("region and credentials are set"),
        ),
    };
    let publisher = SnsPublisher::with_limits(
        client,
        batch_client,
        "arn:aws:sns:us-east-1:123456789012:bench",
        linger,
        limits,
    );
    (
        Arc::new(TestApp::spawn(&config_with(&[]), Arc::new(publisher)).await),
        sink,
    )
}

async fn send_all(app: &Arc<TestApp>, texts: Vec<String>) -> Vec<(String, u16, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for text in texts {
        let app = app.clone();
        tasks.spawn(async move {
            let r = app.post_message(&json!({"to": TO, "message": text})).await;
            let status = r.status().as_u16();
            (text, status, r.json::<Value>().await.unwrap())
        });
    }
    let mut out = Vec::new();
    while let Some(t) = tasks.join_next().await {
        out.push(t.unwrap());
    }
    out
}

/// Concurrent sends share PublishBatch calls, and every 202 is a published message.
async fn concurrent_sends_are_coalesced_into_batches(which: Client) {
    let (app, sink) = gateway_with_sink(Duration::from_millis(5), which).await;

    let results = send_all(&app, (0..60).map(|i| format!("batch {i}")).collect()).await;

    assert!(results.iter().all(|(_, status, _)| *status == 202));
    let published = sink.bodies();
    assert_eq!(published.len(), 60);
    for (_, _, body) in &results {
        let id = body["messageId"].as_str().unwrap();
        assert!(
            published.iter().any(|m| m.contains(id)),
            "{id} was acknowledged but not published"
        );
    }
    assert_eq!(
        sink.publish_calls
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "single Publish calls were made"
    );
    assert!(
        sink.calls() <= 30,
        "{} calls for 60 messages: not batched",
        sink.calls()
    );
}

/// In one batch, a permanently failed entry is that request's 503, a transiently
/// failed entry is retried and accepted, and the others are unaffected.
async fn a_failed_entry_fails_only_its_own_request(which: Client) {
    let (app, sink) = gateway_with_sink(Duration::from_millis(20), which).await;
    let mut texts: Vec<String> = (0..6).map(|i| format!("fine {i}")).collect();
    texts.push("FAIL-PERMANENT please".into());
    texts.push("FAIL-TRANSIENT-ONCE please".into());

    let results = send_all(&app, texts).await;

    for (text, status, body) in &results {
        if text.contains("FAIL-PERMANENT") {
            assert_eq!(*status, 503, "{body}");
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("nothing was published")
            );
        } else {
            assert_eq!(*status, 202, "{text}: {body}");
        }
    }
    let published = sink.bodies();
    assert_eq!(published.len(), 7);
    assert!(!published.iter().any(|m| m.contains("FAIL-PERMANENT")));
    assert_eq!(
        published
            .iter()
            .filter(|m| m.contains("FAIL-TRANSIENT-ONCE"))
            .count(),
        1
    );
    assert!(
        sink.failed_entries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

/// With no linger and a single caller, each send is published at once (no waiting for company).
async fn a_lone_send_is_not_held_back(which: Client) {
    let (app, sink) = gateway_with_sink(Duration::ZERO, which).await;
    for i in 0..3 {
        let r = app
            .post_message(&json!({"to": TO, "message": format!("lone {i}")}))
            .await;
        assert_eq!(r.status(), 202);
    }
    assert_eq!(sink.calls(), 3);
    assert_eq!(sink.bodies().len(), 3);
}

/// Concurrent sends share PublishBatch calls, and every 202 is a published message.
#[tokio::test]
async fn concurrent_sends_are_coalesced_into_batches_with_the_sdk() {
    concurrent_sends_are_coalesced_into_batches(Client::Sdk).await;
}

/// Concurrent sends share PublishBatch calls, and every 202 is a published message.
#[tokio::test]
async fn concurrent_sends_are_coalesced_into_batches_with_the_lean_client() {
    concurrent_sends_are_coalesced_into_batches(Client::Lean).await;
}

/// In one batch, a permanently failed entry is that request's 503, a transiently
/// failed entry is retried and accepted, and the others are unaffected.
#[tokio::test]
async fn a_failed_entry_fails_only_its_own_request_with_the_sdk() {
    a_failed_entry_fails_only_its_own_request(Client::Sdk).await;
}

/// In one batch, a permanently failed entry is that request's 503, a transiently
/// failed entry is retried and accepted, and the others are unaffected.
#[tokio::test]
async fn a_failed_entry_fails_only_its_own_request_with_the_lean_client() {
    a_failed_entry_fails_only_its_own_request(Client::Lean).await;
}

/// With no linger and a single caller, each send is published at once (no waiting for company).
#[tokio::test]
async fn a_lone_send_is_not_held_back_with_the_sdk() {
    a_lone_send_is_not_held_back(Client::Sdk).await;
}

/// With no linger and a single caller, each send is published at once (no waiting for company).
#[tokio::test]
async fn a_lone_send_is_not_held_back_with_the_lean_client() {
    a_lone_send_is_not_held_back(Client::Lean).await;
}

/// SNS failing every entry under load cannot wedge the batcher: every request
/// gets an answer, and once SNS recovers sends are accepted again and `/health`
/// is 200. (Before, a batch task held its in-flight permit while waiting to
/// re-queue into a full channel whose reader waited for a permit: after such
/// an outage every send got 503 for good.)
#[tokio::test]
async fn a_failing_sns_cannot_wedge_the_batcher() {
    let limits = herald::publisher::sns::BatcherLimits {
        max_in_flight: 2,
        max_queued_bytes: 512 * 1024,
    };
    let (app, sink) =
        gateway_with_sink_limited(Duration::from_millis(1), Client::Lean, limits).await;
    sink.fail_all
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let outage = tokio::time::timeout(
        Duration::from_secs(30),
        send_all(&app, (0..300).map(|i| format!("outage {i}")).collect()),
    )
    .await
    .expect("every request is answered during the outage");
    assert!(outage.iter().all(|(_, status, _)| *status == 503));
    assert!(outage.iter().all(|(_, _, problem)| {
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was published")
    }));

    sink.fail_all
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let after = tokio::time::timeout(
        Duration::from_secs(30),
        send_all(&app, (0..50).map(|i| format!("after {i}")).collect()),
    )
    .await
    .expect("every request is answered after the outage");
    assert!(
        after.iter().all(|(_, status, _)| *status == 202),
        "{after:?}"
    );
    assert_eq!(app.get("/health").await.status(), 200);
}

/// A batch whose PublishBatch calls fail some entries (per-entry failures):
/// exactly those entries are `unavailable`, the others accepted.
#[tokio::test]
async fn a_batch_marks_exactly_the_entries_sns_failed_unavailable() {
    let (app, sink) = gateway_with_sink(Duration::from_millis(1), Client::Lean).await;
    let messages: Vec<Value> = (0..40)
        .map(|i| {
            let text = if i % 7 == 3 {
                format!("entry {i} FAIL-PERMANENT")
            } else {
                format!("entry {i}")
            };
            json!({"to": TO, "message": text})
        })
        .collect();
    let answer = app.post_batch(&json!({"messages": messages})).await;
    let unavailable: Vec<u64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "unavailable")
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(unavailable, [3, 10, 17, 24, 31, 38]);
    assert_eq!(answer["accepted"], 34);
    let bodies = sink.bodies();
    assert_eq!(bodies.len(), 34);
    assert!(bodies.iter().all(|b| !b.contains("FAIL-PERMANENT")));
}
