//! The gateway against a real SNS/SQS emulator: what a 202 promises is a
//! message in the queue, and what is rejected never gets there.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use herald::contract::Envelope;
use herald::publisher::SnsPublisher;
use serde_json::{Value, json};

use crate::helpers::aws::{Emulator, TopicWithQueue, emulator};
use crate::helpers::{TO, TestApp, config_with};

/// A fresh topic with a subscribed queue, and a gateway publishing to it with
/// the given `SNS_CLIENT`.
async fn gateway_on_new_topic(fifo: bool, sns_client: &str) -> (Emulator, TopicWithQueue, TestApp) {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(fifo, 5).await;
    let app = TestApp::spawn_from_config(&config_with(&[
        ("SNS_TOPIC_ARN", &tq.topic_arn),
        ("SNS_CLIENT", sns_client),
    ]))
    .await;
    (aws, tq, app)
}

/// A 202 is an envelope in the subscribed queue, equal field by field to what was sent.
async fn an_accepted_message_arrives_in_the_subscribed_queue(sns_client: &str) {
    // Arrange
    let (aws, tq, app) = gateway_on_new_topic(false, sns_client).await;

    // Act
    let id = app
        .send_accepted(
            &json!({"to": TO, "text": {"body": "Hello from Herald", "previewUrl": true},
            "replyTo": "wamid.PREV", "callbackData": "order-42", "metadata": {"tenant": "acme"}}),
        )
        .await;

    // Assert
    let messages = aws.drain(&tq.queue_url, 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1);
    let body = messages[0].body().unwrap();
    let envelope = Envelope::from_json(body).expect("the queue holds a valid envelope");
    assert_eq!(envelope.id.to_string(), id);
    assert_eq!(envelope.version, 1);
    assert_eq!(envelope.to.as_str(), TO);
    assert_eq!(
        envelope.message,
        json!({"type": "text", "text": {"body": "Hello from Herald", "preview_url": true}})
    );
    assert_eq!(envelope.reply_to.as_deref(), Some("wamid.PREV"));
    assert_eq!(envelope.callback_data.as_deref(), Some("order-42"));
    assert_eq!(Value::Object(envelope.metadata), json!({"tenant": "acme"}));
    assert_eq!(envelope.api_key_id, "ops");
    let raw: Value = serde_json::from_str(body).unwrap();
    assert_eq!(raw["channel"], "whatsapp");
    assert!(raw["acceptedAt"].as_str().unwrap().ends_with('Z'));
    let attrs = messages[0]
        .message_attributes()
        .expect("raw delivery carries the SNS attributes");
    assert_eq!(attrs["channel"].string_value(), Some("whatsapp"));
    assert_eq!(attrs["type"].string_value(), Some("text"));
}

/// Rejected requests publish nothing: only the valid one reaches the queue.
#[tokio::test]
async fn rejected_requests_never_reach_the_queue() {
    let (aws, tq, app) = gateway_on_new_topic(false, "sdk").await;

    for bad in [
        json!({"to": "4155550123", "message": "x"}),
        json!({"to": TO}),
        json!({"to": TO, "mesage": "x"}),
    ] {
        assert_eq!(app.post_message(&bad).await.status(), 400);
    }
    let unauthenticated = app
        .client
        .post(format!("{}/api/v1/send", app.address))
        .json(&json!({"to": TO, "message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        app.post_message(&json!({"to": TO, "message": "the only one"}))
            .await
            .status(),
        202
    );

    let messages = aws.drain(&tq.queue_url, 2, Duration::from_secs(4)).await;
    assert_eq!(messages.len(), 1);
    assert!(messages[0].body().unwrap().contains("the only one"));
}

/// On a FIFO topic the recipient is the group and the envelope id the deduplication id.
async fn a_fifo_topic_gets_group_and_deduplication_ids(sns_client: &str) {
    let (aws, tq, app) = gateway_on_new_topic(true, sns_client).await;

    let id = app
        .send_accepted(&json!({"to": TO, "message": "in order"}))
        .await;

    let messages = aws.drain(&tq.queue_url, 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1);
    let attrs = messages[0]
        .attributes()
        .expect("system attributes requested");
    assert_eq!(
        attrs
            .get(&MessageSystemAttributeName::MessageGroupId)
            .map(String::as_str),
        Some(TO)
    );
    assert_eq!(
        attrs.get(&MessageSystemAttributeName::MessageDeduplicationId),
        Some(&id)
    );
}

/// With SNS unreachable, sends are 503 with Retry-After and /health is 503.
#[tokio::test]
async fn an_unreachable_sns_is_503_and_nothing_is_accepted() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{closed_port}"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    let publisher = SnsPublisher::with_sdk(
        aws_sdk_sns::Client::new(&config),
        "arn:aws:sns:us-east-1:123456789012:nowhere",
        Duration::from_millis(1),
    );
    let app = TestApp::spawn(&config_with(&[]), Arc::new(publisher)).await;

    let response = app
        .post_message(&json!({"to": TO, "message": "lost?"}))
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was published")
    );
    assert_eq!(app.get("/health").await.status(), 503);
}

/// A topic deleted while the gateway runs is a 503 telling the client to come
/// back later, and the detail leaks no ARN or account number. (A topic
/// missing at start stops the gateway: `preflight` tests.)
#[tokio::test]
async fn a_missing_topic_is_503_without_account_details() {
    let aws = emulator().await;
    let missing = aws
        .sns
        .create_topic()
        .name(crate::helpers::aws::unique_name("missing"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let app = TestApp::spawn_from_config(&config_with(&[("SNS_TOPIC_ARN", &missing)])).await;
    aws.sns
        .delete_topic()
        .topic_arn(&missing)
        .send()
        .await
        .unwrap();
    let response = app.post_message(&json!({"to": TO, "message": "x"})).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    let text = response.text().await.unwrap();
    assert!(!text.contains("123456789012"), "{text}");
    let health = app.get("/health").await;
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["failing"], json!(["sns"]));
    // /health needs no key: it names the failing check, never the topic ARN
    // (which holds the AWS account id).
    assert_eq!(
        health["checks"]["sns"]["detail"]["reason"],
        "topic-unreachable"
    );
    let shown = health.to_string();
    assert!(
        !shown.contains("123456789012") && !shown.contains("arn:"),
        "{shown}"
    );
    drop(aws);
}

/// With a real topic, /health is 200 and reports SNS reachable.
#[tokio::test]
async fn health_is_ok_when_the_topic_is_reachable() {
    let (_aws, _tq, app) = gateway_on_new_topic(false, "sdk").await;
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap()["checks"]["sns"]["status"],
        "ok"
    );
}

/// Many concurrent sends: every 202 is exactly one message in the queue.
#[tokio::test]
async fn every_concurrent_202_is_one_queued_envelope() {
    let (aws, tq, app) = gateway_on_new_topic(false, "sdk").await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.send_accepted(&json!({"to": TO, "message": format!("n{i}")}))
                .await
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        accepted.push(t.await.unwrap());
    }
    let messages = aws.drain(&tq.queue_url, 40, Duration::from_secs(20)).await;
    let mut queued: Vec<String> = messages
        .iter()
        .map(|m| {
            Envelope::from_json(m.body().unwrap())
                .unwrap()
                .id
                .to_string()
        })
        .collect();
    accepted.sort();
    queued.sort();
    assert_eq!(queued, accepted);
}

/// A 202 is an envelope in the subscribed queue, equal field by field to what was sent.
#[tokio::test]
async fn an_accepted_message_arrives_in_the_subscribed_queue_with_the_sdk() {
    an_accepted_message_arrives_in_the_subscribed_queue("sdk").await;
}

/// A 202 is an envelope in the subscribed queue, equal field by field to what was sent.
/// (Herald's own `PublishBatch` client, `SNS_CLIENT=lean`.)
#[tokio::test]
async fn an_accepted_message_arrives_in_the_subscribed_queue_with_the_lean_client() {
    an_accepted_message_arrives_in_the_subscribed_queue("lean").await;
}

/// On a FIFO topic the recipient is the group and the envelope id the deduplication id.
#[tokio::test]
async fn a_fifo_topic_gets_group_and_deduplication_ids_with_the_sdk() {
    a_fifo_topic_gets_group_and_deduplication_ids("sdk").await;
}

/// On a FIFO topic the recipient is the group and the envelope id the deduplication id.
/// (Herald's own `PublishBatch` client, `SNS_CLIENT=lean`.)
#[tokio::test]
async fn a_fifo_topic_gets_group_and_deduplication_ids_with_the_lean_client() {
    a_fifo_topic_gets_group_and_deduplication_ids("lean").await;
}
