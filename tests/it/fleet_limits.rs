//! One rate, one pair rate and one circuit per sending number across
//! consumers (`STATUS_TABLE` set): SQS pollers sharing a WhatsApp number
//! through DynamoDB (moto) stay under the number's cap and pair rate together,
//! an alert seen by one opens the circuit for all, and a consumer that dies
//! with slots booked holds nothing back for long.

use std::sync::Arc;
use std::time::Duration;

use herald::channels::pacing::ThroughputLimiter;
use herald::config::WhatsAppConfig;
use herald::consumer::sqs_poller::SqsPoller;
use herald::delivery::Pipeline;
use herald::fleet::FleetTable;
use herald::fleet::pace::FleetPace;
use serde_json::json;

use crate::helpers::aws::{Emulator, emulator};
use crate::helpers::graph_limits::LimitedGraph;
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp, pipeline_for};
use crate::helpers::{envelope, eventually};

/// A pipeline to `base_url` at `cap` msg/s and `pair_rate`, its limits
/// shared through `table`.
fn shared_pipeline(base_url: &str, cap: u32, pair_rate: u32, table: &FleetTable) -> Arc<Pipeline> {
    let config = WhatsAppConfig {
        base_url: base_url.to_owned(),
        max_mps: cap,
        pair_rate,
        ..FakeWhatsApp::config_for_tests()
    };
    let pipeline = pipeline_for(&config, 8);
    herald::fleet::share_limits(&pipeline, table);
    Arc::new(pipeline)
}

/// `count` pollers on one queue, each with its own pipeline; stopped when
/// the returned senders are dropped.
async fn pollers(
    aws: &Emulator,
    queue_url: &str,
    pipelines: Vec<Arc<Pipeline>>,
) -> Vec<tokio::sync::oneshot::Sender<()>> {
    let mut stops = Vec::new();
    for pipeline in pipelines {
        let poller = SqsPoller::new(aws.sqs.clone(), queue_url, pipeline).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(poller.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }
    stops
}

async fn enqueue(aws: &Emulator, queue_url: &str, recipients: &[String]) {
    for (i, to) in recipients.iter().enumerate() {
        let body = envelope("ops", json!({"to": to, "message": format!("fleet {i}")}));
        aws.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body.to_json())
            .send()
            .await
            .expect("enqueue");
    }
}

async fn table(aws: &Emulator) -> FleetTable {
    FleetTable::new(aws.dynamodb.clone(), &aws.status_table().await)
}

#[tokio::test]
async fn two_pollers_sharing_a_number_stay_under_its_cap_together() {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 10).await;
    let table = table(&aws).await;
    let graph = LimitedGraph::start(10).await;
    let recipients: Vec<String> = (0..40).map(|i| format!("+1415555{i:04}")).collect();
    enqueue(&aws, &tq.queue_url, &recipients).await;
    // Each consumer is configured with the number's whole cap.
    let pipelines = (0..2)
        .map(|_| shared_pipeline(&graph.uri, 10, 0, &table))
        .collect();
    let _stops = pollers(&aws, &tq.queue_url, pipelines).await;

    eventually(
        "40 messages at the provider",
        Duration::from_secs(60),
        async || Some(()).filter(|()| graph.counts().0 == 40),
    )
    .await;
    let (accepted, throttled, _) = graph.counts();
    assert_eq!((accepted, throttled), (40, 0));
    assert!(
        graph.max_window() <= 10,
        "{} in one second",
        graph.max_window()
    );
}

#[tokio::test]
async fn the_pair_rate_holds_across_consumers() {
    let aws = emulator().await;
    let table = table(&aws).await;
    let graph = LimitedGraph::start(100).await;
    let first = shared_pipeline(&graph.uri, 50, 1, &table);
    let second = shared_pipeline(&graph.uri, 50, 1, &table);
    let to = |text: &str| envelope("ops", json!({"to": "+14155550199", "message": text}));

    let sent = first.deliver(&to("one"), 1).await;
    assert!(
        matches!(sent, herald::delivery::Decision::Delivered { .. }),
        "{sent:?}"
    );
    // Another consumer, the same person within 6 s: held, not sent, not counted.
    let held = second.deliver(&to("two"), 1).await;
    match held {
        herald::delivery::Decision::Retry { after, counted, .. } => {
            assert!(!counted);
            assert!(
                after > Duration::from_secs(4) && after <= Duration::from_millis(6500),
                "{after:?}"
            );
        }
        other => panic!("expected a hold, got {other:?}"),
    }
    // Someone else is not held back.
    let other = envelope("ops", json!({"to": "+14155550198", "message": "three"}));
    assert!(matches!(
        second.deliver(&other, 1).await,
        herald::delivery::Decision::Delivered { .. }
    ));
    assert_eq!(graph.counts(), (2, 0, 0));
}

#[tokio::test]
async fn an_alert_seen_by_one_consumer_opens_the_circuit_for_all() {
    let aws = emulator().await;
    let table = table(&aws).await;
    let fake = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::expired_token())
        .mount(&fake.server)
        .await;
    let first = shared_pipeline(&fake.server.uri(), 50, 0, &table);
    let second = shared_pipeline(&fake.server.uri(), 50, 0, &table);

    let decision = first
        .deliver(&crate::helpers::text_envelope("token"), 1)
        .await;
    assert!(
        matches!(decision, herald::delivery::Decision::Retry { .. }),
        "{decision:?}"
    );
    assert!(first.any_circuit_open());
    eventually(
        "the second consumer's circuit open",
        Duration::from_secs(5),
        async || Some(()).filter(|()| second.any_circuit_open()),
    )
    .await;
    // The second consumer does not ask the provider.
    second
        .deliver(&crate::helpers::text_envelope("held"), 1)
        .await;
    assert_eq!(fake.bodies().await.len(), 1);
}

#[tokio::test]
async fn a_consumer_killed_holding_slots_holds_back_the_others_only_briefly() {
    let aws = emulator().await;
    let table = table(&aws).await;
    let account = format!("killed-{}", uuid::Uuid::now_v7());
    let schedule = Arc::new(FleetPace::new(table.clone(), "whatsapp", &account));
    let limiter = ThroughputLimiter::new(20);
    limiter.share(schedule.clone());
    // A consumer books a quarter second of the number's rate and dies.
    let interval = Duration::from_secs_f64(1.0 / (20.0 * 0.97));
    let (first_at, booked) = schedule.book_slots(5, interval).await.unwrap();
    let first_in = first_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let dead_until = tokio::time::Instant::now() + first_in + interval * booked;

    // The survivor gets the slots after them, and the whole rate after that.
    let started = tokio::time::Instant::now();
    limiter.acquire().await;
    assert!(
        tokio::time::Instant::now() + Duration::from_millis(60) >= dead_until,
        "a slot booked by the dead consumer was given out again"
    );
    let sent = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..19 {
            limiter.acquire().await;
        }
    })
    .await;
    assert!(
        sent.is_ok(),
        "20 sends at 20 msg/s did not finish within 5 s of {started:?}"
    );
}

#[tokio::test]
async fn every_provider_of_a_consumer_shares_its_limits() {
    let aws = emulator().await;
    let table = table(&aws).await;
    let graph = FakeWhatsApp::start().await;
    let infobip = crate::helpers::infobip::FakeInfobip::accepting().await;
    let whatsapp = herald::channels::whatsapp::WhatsAppClient::new(&WhatsAppConfig {
        pair_rate: 1,
        ..graph.config(Duration::from_secs(5))
    })
    .unwrap();
    let sms = herald::channels::infobip::InfobipClient::new(
        &infobip.config(crate::helpers::infobip::PUBLIC),
    )
    .unwrap();
    let pipeline = Pipeline::new(
        herald::channels::Channels::providers(Some(whatsapp), Some(sms)),
        wa::fast_retries(),
        herald::delivery::PipelineLimits::default(),
    );
    herald::fleet::share_limits(&pipeline, &table);
    let shared: Vec<(&str, bool)> = pipeline
        .providers()
        .map(|(p, _)| {
            (
                p.name(),
                p.pacer().is_some_and(ThroughputLimiter::is_shared),
            )
        })
        .collect();
    // WhatsApp per phone number id, Infobip (SMS_MAX_MPS) per account.
    assert_eq!(shared, vec![("whatsapp", true), ("infobip", true)]);
}
