//! The acknowledgement table on real SQS queues (the emulator): a hold that
//! must not count (an account alert, an open circuit) spends no receive
//! toward the queue's redrive policy, in the poller and in Lambda alike.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use herald::channels::Channels;
use herald::channels::whatsapp::WhatsAppClient;
use herald::consumer::lambda::{LambdaConsumer, handle_event};
use herald::consumer::sqs::ATTEMPTS_BEFORE;
use herald::consumer::sqs_poller::SqsPoller;
use herald::contract::Envelope;
use herald::delivery::{Pipeline, PipelineLimits};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

use crate::helpers::TO;
use crate::helpers::aws::emulator;
use crate::helpers::eventually::eventually;
use crate::helpers::whatsapp::{FakeWhatsApp, expired_token, fast_retries, send_endpoint, success};

/// A pipeline to `fake` whose circuit reopens after 100 ms, so that the
/// alert's hold is short.
fn pipeline(fake: &FakeWhatsApp) -> Arc<Pipeline> {
    let client = WhatsAppClient::new(&fake.config(Duration::from_secs(5))).expect("client builds");
    Arc::new(Pipeline::new(
        Channels::whatsapp(client),
        fast_retries(),
        PipelineLimits {
            max_attempts: 8,
            circuit_cooldown: Duration::from_millis(100),
            ..PipelineLimits::default()
        },
    ))
}

fn envelope_json(text: &str) -> String {
    let message =
        herald::domain::OutboundMessage::try_from(json!({"to": TO, "message": text})).unwrap();
    Envelope::new(uuid::Uuid::now_v7(), message, "ops").to_json()
}

/// The poller: two account alerts in a row on a queue that dead-letters at
/// the second receive still end in one delivery, and nothing reaches the
/// dead-letter queue: each alert replaced the message instead of spending a
/// receive.
#[tokio::test]
async fn alerts_do_not_spend_the_pollers_receives() {
    let aws = emulator().await;
    let queues = aws.topic_with_queue(false, 2).await;
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(expired_token())
        .up_to_n_times(2)
        .expect(2)
        .mount(&fake.server)
        .await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.after-alerts"))
        .expect(1)
        .mount(&fake.server)
        .await;
    aws.sqs
        .send_message()
        .queue_url(&queues.queue_url)
        .message_body(envelope_json("held, not counted"))
        .send()
        .await
        .expect("send to the queue");
    let poller = SqsPoller::new(aws.sqs.clone(), &queues.queue_url, pipeline(&fake)).await;

    eventually(
        "the delivery after two alerts",
        Duration::from_secs(60),
        || async {
            poller
                .poll_once(Duration::from_secs(1))
                .await
                .expect("receive works");
            let sent = fake.server.received_requests().await.unwrap_or_default();
            (sent.len() >= 3).then_some(())
        },
    )
    .await;
    eventually("the queue to empty", Duration::from_secs(30), || async {
        poller
            .poll_once(Duration::from_secs(1))
            .await
            .expect("receive works");
        (aws.depth(&queues.queue_url).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        aws.depth(&queues.dlq_url).await,
        0,
        "nothing was dead-lettered"
    );
    assert_eq!(fake.server.received_requests().await.unwrap().len(), 3);
}

/// Lambda: an alert on a record from a real queue is reported as a success,
/// and a delayed copy carrying the attempts so far takes its place.
#[tokio::test]
async fn an_alert_in_lambda_replaces_the_record_with_a_copy() {
    let aws = emulator().await;
    let queues = aws.topic_with_queue(false, 2).await;
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(expired_token())
        .expect(1)
        .mount(&fake.server)
        .await;
    let body = envelope_json("held in lambda");
    aws.sqs
        .send_message()
        .queue_url(&queues.queue_url)
        .message_body(&body)
        .send()
        .await
        .expect("send to the queue");
    let received = aws.receive_one(&queues.queue_url).await;
    let arn = aws.queue_arn(&queues.queue_url).await;
    let event = json!({"Records": [{
        "messageId": received.message_id(),
        "receiptHandle": received.receipt_handle(),
        "body": received.body(),
        "attributes": {"ApproximateReceiveCount": received.attributes().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount)).expect("receive count")},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }]});

    let response = handle_event(
        LambdaEvent::new(event, Context::default()),
        &LambdaConsumer::new(pipeline(&fake)),
    )
    .await
    .expect("an SQS event is handled");

    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    // Lambda deletes what it reports as a success; the copy is what remains.
    aws.sqs
        .delete_message()
        .queue_url(&queues.queue_url)
        .receipt_handle(received.receipt_handle().unwrap())
        .send()
        .await
        .expect("delete the original");
    let copies = aws
        .drain(&queues.queue_url, 1, Duration::from_secs(30))
        .await;
    assert_eq!(copies.len(), 1, "one copy");
    assert_eq!(copies[0].body(), Some(body.as_str()));
    let before = copies[0]
        .message_attributes()
        .and_then(|a| a.get(ATTEMPTS_BEFORE))
        .and_then(|v| v.string_value());
    assert_eq!(before, Some("0"), "the alert's receive is not counted");
    let receives: Value = copies[0]
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .map(|c| json!(c))
        .unwrap();
    assert_eq!(
        receives,
        json!("1"),
        "the copy starts its own receive count"
    );
}
