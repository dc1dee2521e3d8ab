//! End to end through the emulator: gateway → SNS (moto) → SQS → poller → fake
//! Graph API, with a real dead-letter queue and redrive policy.

use std::sync::Arc;
use std::time::Duration;

use herald::consumer::sqs_poller::SqsPoller;
use serde_json::json;
use wiremock::matchers::body_partial_json;

use crate::helpers::aws::{Emulator, TopicWithQueue, emulator};
use crate::helpers::whatsapp::{FakeWhatsApp, graph_error, send_endpoint, success, undeliverable};
use crate::helpers::{TO, TestApp, config_with, eventually};

/// Receives allowed before the queue dead-letters a message.
const MAX_RECEIVES: u32 = 3;

struct Pipeline {
    aws: Emulator,
    tq: TopicWithQueue,
    gateway: TestApp,
    fake: FakeWhatsApp,
    poller: SqsPoller,
}

async fn pipeline() -> Pipeline {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, MAX_RECEIVES).await;
    let gateway =
        TestApp::spawn_from_config(&config_with(&[("SNS_TOPIC_ARN", &tq.topic_arn)])).await;
    let fake = FakeWhatsApp::start().await;
    let poller = SqsPoller::new(
        aws.sqs.clone(),
        &tq.queue_url,
        Arc::new(fake.pipeline(Duration::from_secs(5))),
    )
    .await;
    Pipeline {
        aws,
        tq,
        gateway,
        fake,
        poller,
    }
}

impl Pipeline {
    async fn send(&self, text: &str) -> String {
        self.gateway
            .send_accepted(&json!({"to": TO, "message": text}))
            .await
    }

    /// Polls the queue until `done` holds; fails naming `what` after 20 s.
    async fn poll_until(&self, what: &str, done: impl AsyncFn() -> bool) {
        eventually(what, Duration::from_secs(20), async || {
            if done().await {
                return Some(());
            }
            self.poller
                .poll_once(Duration::from_secs(1))
                .await
                .expect("receive works");
            None
        })
        .await;
    }

    async fn requests(&self) -> usize {
        self.fake
            .server
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    }
}

/// A retryable failure is retried and the message ends delivered exactly once.
#[tokio::test]
async fn a_retryable_failure_ends_delivered_exactly_once() {
    let p = pipeline().await;
    send_endpoint()
        .respond_with(graph_error(
            500,
            131_000,
            "Something went wrong",
            "unknown error",
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&p.fake.server)
        .await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.ok"))
        .expect(1)
        .mount(&p.fake.server)
        .await;

    p.send("try again").await;

    p.poll_until("the retry", async || p.requests().await >= 2)
        .await;
    p.poll_until("an empty queue", async || {
        p.aws.depth(&p.tq.queue_url).await == 0
    })
    .await;
    // A last poll shows nothing is redelivered after success.
    p.poller.poll_once(Duration::from_secs(1)).await.unwrap();
    assert_eq!(p.requests().await, 2);
    assert_eq!(p.aws.depth(&p.tq.dlq_url).await, 0);
}

/// A permanent failure is sent once, not retried, and removed from the queue.
#[tokio::test]
async fn a_permanent_failure_is_sent_once() {
    let p = pipeline().await;
    send_endpoint()
        .respond_with(undeliverable())
        .expect(1)
        .mount(&p.fake.server)
        .await;

    p.send("nobody there").await;

    p.poll_until("a send", async || p.requests().await >= 1)
        .await;
    p.poll_until("an empty queue", async || {
        p.aws.depth(&p.tq.queue_url).await == 0
    })
    .await;
    p.poller.poll_once(Duration::from_secs(1)).await.unwrap();
    assert_eq!(p.requests().await, 1);
    assert_eq!(p.aws.depth(&p.tq.dlq_url).await, 0);
}

/// A persistent 5xx is retried up to the queue's max receive count, then the
/// redrive policy moves it to the dead-letter queue.
#[tokio::test]
async fn a_persistent_server_error_ends_in_the_dead_letter_queue() {
    let p = pipeline().await;
    send_endpoint()
        .respond_with(graph_error(503, 131_016, "Service unavailable", "down"))
        .mount(&p.fake.server)
        .await;

    let id = p.send("doomed").await;

    p.poll_until("a dead letter", async || {
        p.aws.depth(&p.tq.dlq_url).await == 1
    })
    .await;
    assert_eq!(p.requests().await, MAX_RECEIVES as usize);
    let dead = p.aws.drain(&p.tq.dlq_url, 1, Duration::from_secs(5)).await;
    assert!(dead[0].body().unwrap().contains(&id));
}

/// A bad envelope never reaches WhatsApp, goes to the dead-letter queue, and the
/// poller keeps delivering what follows.
#[tokio::test]
async fn a_bad_envelope_is_dead_lettered_and_the_poller_keeps_going() {
    let p = pipeline().await;
    send_endpoint()
        .and(body_partial_json(
            json!({"text": {"body": "after the bad one"}}),
        ))
        .respond_with(success("14155550123", "wamid.after"))
        .expect(1)
        .mount(&p.fake.server)
        .await;
    for garbage in ["not json at all", r#"{"version": 99, "id": "x"}"#] {
        p.aws
            .sns
            .publish()
            .topic_arn(&p.tq.topic_arn)
            .message(garbage)
            .send()
            .await
            .unwrap();
    }
    p.send("after the bad one").await;

    p.poll_until("two dead letters and one send", async || {
        p.aws.depth(&p.tq.dlq_url).await == 2 && p.requests().await == 1
    })
    .await;
    assert_eq!(p.aws.depth(&p.tq.queue_url).await, 0);
}
