//! The SQS poller keeps a message invisible for as long as it holds it, even
//! when the queue's visibility timeout is shorter than one delivery.

use std::sync::Arc;
use std::time::Duration;

use herald::consumer::sqs_poller::SqsPoller;

use crate::helpers::aws::emulator;
use crate::helpers::text_envelope;
use crate::helpers::whatsapp::{FakeWhatsApp, send_endpoint, success};

/// VisibilityTimeout 2 s, WhatsApp answering in 5 s, the poller receiving all
/// along: the message is sent once, then deleted.
#[tokio::test]
async fn a_slow_delivery_outlives_a_short_visibility_timeout_without_a_second_send() {
    let aws = emulator().await;
    let queue_url = aws.queue_with_visibility(2).await;
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.slow").set_delay(Duration::from_secs(5)))
        .mount(&fake.server)
        .await;
    let envelope = text_envelope("slow");
    aws.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body(envelope.to_json())
        .send()
        .await
        .unwrap();

    let poller = SqsPoller::new(
        aws.sqs.clone(),
        &queue_url,
        Arc::new(fake.pipeline(Duration::from_secs(10))),
    )
    .await;
    // Not a wait for an outcome: the poller runs for a fixed 8 s, past the
    // 5 s answer and several 2 s visibility timeouts.
    poller
        .run_until_stopped(tokio::time::sleep(Duration::from_secs(8)))
        .await;

    let sends = fake.server.received_requests().await.unwrap().len();
    assert_eq!(sends, 1, "the message was sent {sends} times");
    assert_eq!(
        aws.depth(&queue_url).await,
        0,
        "the delivered message was deleted"
    );
}
