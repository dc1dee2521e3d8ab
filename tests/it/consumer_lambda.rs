//! The Lambda handler called directly with real-shaped SNS and SQS events
//! (fixtures under tests/fixtures/lambda), against a fake Graph API.

use std::time::Duration;

use herald::consumer::lambda::{InvocationError, LambdaConsumer, handle_event};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use wiremock::matchers::body_partial_json;

use crate::helpers::text_envelope;
use crate::helpers::whatsapp::{FakeWhatsApp, graph_error, send_endpoint, success, undeliverable};

const SNS_EVENT: &str = include_str!("../fixtures/lambda/sns-event.json");
const SQS_EVENT: &str = include_str!("../fixtures/lambda/sqs-event.json");

fn envelope_json(text: &str) -> String {
    text_envelope(text).to_json()
}

fn sns_event(message: &str) -> LambdaEvent<Value> {
    let mut event: Value = serde_json::from_str(SNS_EVENT).unwrap();
    event["Records"][0]["Sns"]["Message"] = json!(message);
    LambdaEvent::new(event, Context::default())
}

/// An SQS event whose three records carry these bodies.
fn sqs_event(bodies: [&str; 3], fifo: bool) -> LambdaEvent<Value> {
    let mut event: Value = serde_json::from_str(SQS_EVENT).unwrap();
    for (i, body) in bodies.iter().enumerate() {
        event["Records"][i]["body"] = json!(body);
        if fifo {
            event["Records"][i]["eventSourceARN"] =
                json!("arn:aws:sqs:us-east-1:123456789012:herald-messages.fifo");
        }
    }
    LambdaEvent::new(event, Context::default())
}

fn sns_wrapped(envelope: &str) -> String {
    json!({"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:herald-messages", "Message": envelope,
        "Timestamp": "2026-11-23T12:00:00.123Z", "SignatureVersion": "1", "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"})
    .to_string()
}

fn failed_ids(response: &Value) -> Vec<&str> {
    response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect()
}

/// SNS → Lambda: a delivered message acknowledges the invocation.
#[tokio::test]
async fn an_sns_event_is_delivered() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .and(body_partial_json(
            json!({"to": "14155550123", "text": {"body": "from sns"}}),
        ))
        .respond_with(success("14155550123", "wamid.sns"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let result = handle_event(
        sns_event(&envelope_json("from sns")),
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await;
    assert_eq!(result.unwrap(), Value::Null);
}

/// SNS → Lambda: a retryable failure fails the invocation so SNS/Lambda retry it.
#[tokio::test]
async fn a_retryable_failure_fails_the_sns_invocation() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(graph_error(500, 131_000, "Something went wrong", "unknown"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let result = handle_event(
        sns_event(&envelope_json("retry me")),
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await;
    assert!(
        matches!(
            result,
            Err(InvocationError::Retryable {
                failed: 1,
                total: 1
            })
        ),
        "{result:?}"
    );
}

/// SNS → Lambda: a permanent failure is logged and acknowledged, not retried.
#[tokio::test]
async fn a_permanent_failure_acknowledges_the_sns_invocation() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(undeliverable())
        .expect(1)
        .mount(&fake.server)
        .await;
    let result = handle_event(
        sns_event(&envelope_json("undeliverable")),
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await;
    assert!(result.is_ok());
}

/// SNS → Lambda: an unknown envelope version is never sent and fails the invocation,
/// so it reaches the function's dead-letter destination.
#[tokio::test]
async fn an_unknown_envelope_version_is_never_sent() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("1", "wamid.never"))
        .expect(0)
        .mount(&fake.server)
        .await;
    let mut v: Value = serde_json::from_str(&envelope_json("from the future")).unwrap();
    v["version"] = json!(2);
    let result = handle_event(
        sns_event(&v.to_string()),
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await;
    assert!(result.is_err());
}

/// SQS → Lambda: `batchItemFailures` lists exactly the retryable and unreadable
/// records; raw bodies and SNS-wrapped bodies both work.
#[tokio::test]
async fn an_sqs_batch_reports_exactly_the_records_to_retry() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .and(body_partial_json(json!({"text": {"body": "ok raw"}})))
        .respond_with(success("14155550123", "wamid.1"))
        .expect(1)
        .mount(&fake.server)
        .await;
    send_endpoint()
        .and(body_partial_json(
            json!({"text": {"body": "throttled wrapped"}}),
        ))
        .respond_with(graph_error(
            400,
            130_429,
            "Rate limit hit",
            "throughput reached",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    let event = sqs_event(
        [
            &envelope_json("ok raw"),
            &sns_wrapped(&envelope_json("throttled wrapped")),
            "not an envelope",
        ],
        false,
    );

    let response = handle_event(
        event,
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await
    .unwrap();

    assert_eq!(
        failed_ids(&response),
        [
            "2e1424d4-f796-459a-8184-9c92662be6da",
            "f3a1b7c2-0d4e-4c5f-9a8b-7e6d5c4b3a21"
        ]
    );
}

/// SQS FIFO → Lambda: stop at the first failure; it and every later record are reported.
#[tokio::test]
async fn a_fifo_batch_stops_at_the_first_failure() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .and(body_partial_json(json!({"text": {"body": "first"}})))
        .respond_with(graph_error(
            503,
            131_016,
            "Service unavailable",
            "temporarily unavailable",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.x"))
        .expect(0)
        .mount(&fake.server)
        .await;
    let event = sqs_event(
        [
            &envelope_json("first"),
            &envelope_json("second"),
            &envelope_json("third"),
        ],
        true,
    );

    let response = handle_event(
        event,
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await
    .unwrap();

    assert_eq!(failed_ids(&response).len(), 3);
}

/// SQS → Lambda: an all-good batch reports no failures.
#[tokio::test]
async fn a_clean_sqs_batch_reports_no_failures() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.ok"))
        .expect(3)
        .mount(&fake.server)
        .await;
    let event = sqs_event(
        [
            &envelope_json("a"),
            &envelope_json("b"),
            &sns_wrapped(&envelope_json("c")),
        ],
        false,
    );
    let response = handle_event(
        event,
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await
    .unwrap();
    assert_eq!(response, json!({"batchItemFailures": []}));
}

/// An event that is neither SNS nor SQS is refused as non-retryable.
#[tokio::test]
async fn an_unknown_event_is_refused() {
    let fake = FakeWhatsApp::start().await;
    let event = LambdaEvent::new(
        json!({"detail-type": "Scheduled Event"}),
        Context::default(),
    );
    let result = handle_event(
        event,
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await;
    assert!(matches!(result, Err(InvocationError::UnknownEvent(_))));
}

/// Near the invocation's deadline the handler starts no new record: those left
/// are reported as failures without being sent, so the invocation never times
/// out and Lambda never retries records it already delivered.
#[tokio::test]
async fn records_left_at_the_deadline_are_reported_not_sent() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.slow").set_delay(Duration::from_millis(1000)))
        .expect(2)
        .mount(&fake.server)
        .await;
    // FIFO, one group: the records go one after another (a standard batch
    // would start all three at once).
    let mut event = sqs_event(
        [
            &envelope_json("one"),
            &envelope_json("two"),
            &envelope_json("three"),
        ],
        true,
    );
    // One call may take 3 s and 1 s is kept free: records may start for 1.5 s.
    let now_ms = herald::embedded::now_ms() as u64;
    event.context.deadline = now_ms + 5_500;

    let response = handle_event(
        event,
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(3)))),
    )
    .await
    .unwrap();

    // Record 1 starts at 0 s, record 2 at 1 s, record 3 would start at 2 s.
    assert_eq!(
        failed_ids(&response),
        ["f3a1b7c2-0d4e-4c5f-9a8b-7e6d5c4b3a21"]
    );
}

/// FIFO batches: the records of one message group go in order and a group
/// stops at its first failure (it and its later records are reported), while
/// other groups are delivered alongside.
#[tokio::test]
async fn fifo_groups_are_ordered_within_and_independent_between() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .and(body_partial_json(json!({"text": {"body": "a1"}})))
        .respond_with(graph_error(
            503,
            131_016,
            "Service unavailable",
            "temporarily unavailable",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    send_endpoint()
        .and(body_partial_json(json!({"text": {"body": "b1"}})))
        .respond_with(success("14155550123", "wamid.b1"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let mut event = sqs_event(
        [
            &envelope_json("a1"),
            &envelope_json("a2"),
            &envelope_json("b1"),
        ],
        true,
    );
    for (i, group) in ["a", "a", "b"].iter().enumerate() {
        event.payload["Records"][i]["attributes"]["MessageGroupId"] = json!(group);
    }
    let response = handle_event(
        event,
        &LambdaConsumer::new(std::sync::Arc::new(fake.pipeline(Duration::from_secs(5)))),
    )
    .await
    .unwrap();
    assert_eq!(
        failed_ids(&response),
        [
            "059f36b4-87a3-44ab-83d2-661975830a7d",
            "2e1424d4-f796-459a-8184-9c92662be6da"
        ],
        "a1 failed, a2 waits behind it, b1 went through"
    );
}
