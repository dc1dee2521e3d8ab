//! SMS in SNS mode, against moto: gateway → SNS → SQS → poller → fake
//! Infobip, statuses in DynamoDB, Infobip's signed reports to the gateway,
//! events on an SNS topic, and an opt-out by inbound STOP that the gateway
//! answers with 422 and the consumer re-checks before delivery.

use std::sync::Arc;
use std::time::Duration;

use herald::channels::Channels;
use herald::channels::infobip::InfobipClient;
use herald::consumer::sqs_poller::SqsPoller;
use herald::delivery::{Pipeline, PipelineLimits};
use herald::events::sns::SnsEvents;
use herald::status::OptOutStore;
use herald::status::dynamodb::DynamoStatusStore;
use serde_json::{Value, json};

use crate::helpers::aws::{emulator, poll_until_status};
use crate::helpers::infobip::{self, FakeInfobip, InfobipSender};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp, fast_retries};
use crate::helpers::{TO, TestApp, config_with, eventually, history_statuses};
use herald::channels::whatsapp::WhatsAppClient;

#[tokio::test]
async fn an_sms_through_sns_sqs_and_the_poller_is_delivered_reported_and_evented() {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let table = aws.status_table().await;
    let (events_topic, events_queue) = aws.events_topic().await;
    let gateway = TestApp::spawn_from_config(&config_with(&[
        ("SNS_TOPIC_ARN", tq.topic_arn.as_str()),
        ("STATUS_TABLE", table.as_str()),
        ("EVENTS_TOPIC_ARN", events_topic.as_str()),
        ("INFOBIP_WEBHOOK_SECRET", infobip::WEBHOOK_SECRET),
    ]))
    .await;
    let fake = FakeInfobip::accepting().await;
    let store = DynamoStatusStore::new(
        aws.dynamodb.clone(),
        &table,
        Duration::from_secs(86_400),
        Some(SnsEvents::new(aws.sns.clone(), &events_topic)),
    );
    let client = InfobipClient::new(&fake.config(infobip::PUBLIC)).unwrap();
    let pipeline = Pipeline::new(
        Channels::providers(None, Some(client)),
        fast_retries(),
        PipelineLimits::default(),
    )
    .with_statuses(Arc::new(store.clone()));
    let poller = SqsPoller::new(aws.sqs.clone(), &tq.queue_url, Arc::new(pipeline)).await;

    let response = gateway
        .post_message(
            &json!({"channel": "sms", "to": TO, "message": "Hello by SMS",
            "callbackData": "order-7"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["sms"]["segments"], 1);
    let id = answer["messageId"].as_str().unwrap().to_owned();

    // A report before the consumer has recorded the send is kept.
    let sender = InfobipSender::new(&gateway.address);
    assert_eq!(sender.reports(vec![infobip::on_operator(&id)]).await, 200);
    let bodies = eventually("the SMS sent", Duration::from_secs(15), async || {
        poller.poll_once(Duration::from_secs(1)).await.unwrap();
        Some(fake.bodies().await).filter(|b| !b.is_empty())
    })
    .await;
    let body = &bodies[0];
    assert_eq!(
        body["messages"][0]["destinations"][0]["messageId"],
        id.as_str()
    );
    assert_eq!(body["messages"][0]["webhooks"]["callbackData"], "order-7");
    assert_eq!(
        sender
            .reports(vec![infobip::delivered(&id), infobip::delivered(&id)])
            .await,
        200
    );
    let view = gateway.wait_for_status(&id, "delivered").await;
    assert_eq!(
        history_statuses(&view),
        ["accepted", "submitted", "sent", "delivered"]
    );
    assert_eq!(view["channel"], "sms");

    let received = aws.drain(&events_queue, 3, Duration::from_secs(15)).await;
    let mut statuses: Vec<String> = received
        .iter()
        .map(|m| {
            let event: Value = serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
            assert_eq!(event["channel"], "sms");
            let attributes = m.message_attributes.clone().unwrap_or_default();
            assert_eq!(attributes["channel"].string_value.as_deref(), Some("sms"));
            event["status"].as_str().unwrap().to_owned()
        })
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["delivered", "sent", "submitted"]);

    // STOP by SMS: the gateway refuses (its cache forgot the number when the
    // webhook recorded it) and the consumer re-checks a message already queued.
    let queued_id = gateway
        .send_accepted(&json!({"channel": "sms", "to": TO, "message": "queued before STOP"}))
        .await;
    assert_eq!(
        sender
            .inbound(vec![infobip::inbound("mo-9", "14155550123", "STOP")])
            .await,
        200
    );
    let refused = gateway
        .post_message(&json!({"channel": "sms", "to": TO, "message": "after STOP"}))
        .await;
    assert_eq!(refused.status(), 422);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["code"],
        "recipient-opted-out"
    );
    assert!(
        store
            .opt_out("default", TO)
            .await
            .unwrap()
            .unwrap()
            .channels
            .contains("sms")
    );
    let view = poll_until_status(&poller, &gateway, &queued_id, "failed").await;
    assert_eq!(view["error"]["code"], "opted-out");
    assert_eq!(fake.bodies().await.len(), 1, "nothing sent after STOP");
}

#[tokio::test]
async fn a_cannot_reach_report_in_sns_mode_publishes_the_fallback_once() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let (aws, tq, table) = (&stack.aws, &stack.tq, &stack.table);
    let mut vars = stack.vars();
    vars.push(("INFOBIP_WEBHOOK_SECRET", infobip::WEBHOOK_SECRET));
    vars.extend(meta::webhook_vars());
    let gateway = TestApp::spawn_from_config(&config_with(&vars)).await;
    let fake = FakeInfobip::accepting().await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.SNSFO"))
        .mount(&whatsapp.server)
        .await;
    let store = DynamoStatusStore::new(
        aws.dynamodb.clone(),
        table,
        Duration::from_secs(86_400),
        None,
    );
    let pipeline = Pipeline::new(
        Channels::providers(
            Some(WhatsAppClient::new(&whatsapp.config(Duration::from_secs(5))).unwrap()),
            Some(InfobipClient::new(&fake.config(infobip::PUBLIC)).unwrap()),
        ),
        fast_retries(),
        PipelineLimits::default(),
    )
    .with_statuses(Arc::new(store));
    let poller = SqsPoller::new(aws.sqs.clone(), &tq.queue_url, Arc::new(pipeline)).await;

    let id = gateway
        .send_accepted(&json!({"to": TO, "message": "hi",
            "fallback": {"channel": "sms", "message": "hi by SMS"}}))
        .await;
    poll_until_status(&poller, &gateway, &id, "submitted").await;
    // Meta: 131026, twice. The gateway publishes the SMS leg once.
    let meta_sender = MetaSender::new(&gateway.address);
    let failed = meta::failed(
        "wamid.SNSFO",
        131_026,
        "Message undeliverable",
        1_750_000_005,
    );
    assert_eq!(
        meta_sender
            .post(&meta::payload(vec![failed.clone()], vec![]))
            .await,
        200
    );
    assert_eq!(
        meta_sender.post(&meta::payload(vec![failed], vec![])).await,
        200
    );
    eventually("the SMS leg sent", Duration::from_secs(15), async || {
        poller.poll_once(Duration::from_secs(1)).await.unwrap();
        (!fake.bodies().await.is_empty()).then_some(())
    })
    .await;
    for _ in 0..2 {
        poller.poll_once(Duration::from_millis(500)).await.unwrap();
    }
    assert_eq!(fake.bodies().await.len(), 1, "one SMS for two reports");
    let sender = InfobipSender::new(&gateway.address);
    assert_eq!(sender.reports(vec![infobip::delivered(&id)]).await, 200);
    let view = gateway.wait_for_status(&id, "delivered").await;
    assert_eq!(
        history_statuses(&view),
        ["accepted", "submitted", "failed", "submitted", "delivered"]
    );
    assert_eq!(view["channel"], "sms");
}
