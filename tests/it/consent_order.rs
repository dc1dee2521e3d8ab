//! Consent follows the person's order, not the webhooks': an opt-out change
//! from an inbound STOP or START applies only when the person sent it after
//! the latest change it would undo, and an inbound message already applied
//! (a provider's retry, or a captured signed webhook replayed months later)
//! changes nothing. The same scenario on both stores.

use serde_json::{Value, json};

use crate::helpers::infobip::{self, InfobipSender};
use crate::helpers::{KEY, TestApp, config_with};

/// An inbound SMS from the test number, sent by the person at `received_at`.
fn keyword(id: &str, text: &str, received_at: &str) -> Value {
    let mut inbound = infobip::inbound(id, "14155550123", text);
    inbound["receivedAt"] = json!(received_at);
    inbound
}

/// The channels the test number is opted out of (none when `404`).
async fn opted_out(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/api/v1/opt-outs/%2B14155550123", app.address))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        404 => json!([]),
        200 => response.json::<Value>().await.unwrap()["channels"].clone(),
        other => panic!("GET opt-out answered {other}"),
    }
}

async fn scenario(app: &TestApp) {
    let sender = InfobipSender::new(&app.address);
    let stop = keyword("mo-stop", "STOP", "2026-01-01T10:00:10.000+0000");
    let old_start = keyword("mo-start-old", "START", "2026-01-01T10:00:05.000+0000");
    let new_start = keyword("mo-start-new", "START", "2026-01-01T10:00:20.000+0000");

    assert_eq!(sender.inbound(vec![stop.clone()]).await, 200);
    assert_eq!(opted_out(app).await, json!(["sms"]));
    // A START the person sent before the STOP, delivered after it.
    assert_eq!(sender.inbound(vec![old_start.clone()]).await, 200);
    assert_eq!(opted_out(app).await, json!(["sms"]), "an older START");
    // A newer START takes it back.
    assert_eq!(sender.inbound(vec![new_start.clone()]).await, 200);
    assert_eq!(opted_out(app).await, json!([]));
    // The signed STOP replayed later, and the old START again: nothing.
    assert_eq!(sender.inbound(vec![stop.clone()]).await, 200);
    assert_eq!(opted_out(app).await, json!([]), "a replayed STOP");
    assert_eq!(sender.inbound(vec![old_start]).await, 200);
    assert_eq!(opted_out(app).await, json!([]));
    // Out of order in one webhook: the person's latest word wins.
    let later_stop = keyword("mo-stop-2", "STOP", "2026-01-01T10:01:00.000+0000");
    let between = keyword("mo-start-3", "START", "2026-01-01T10:00:30.000+0000");
    assert_eq!(sender.inbound(vec![later_stop, between]).await, 200);
    assert_eq!(opted_out(app).await, json!(["sms"]));
    // Within one second, Infobip's milliseconds decide: a START sent 800 ms
    // before the STOP and delivered after it changes nothing.
    let start = keyword("mo-start-4", "START", "2026-01-01T10:02:00.000+0000");
    assert_eq!(sender.inbound(vec![start]).await, 200);
    assert_eq!(opted_out(app).await, json!([]));
    let stop = keyword("mo-stop-5", "STOP", "2026-01-01T10:03:10.900+0000");
    let start = keyword("mo-start-5", "START", "2026-01-01T10:03:10.100+0000");
    assert_eq!(sender.inbound(vec![stop, start]).await, 200);
    assert_eq!(
        opted_out(app).await,
        json!(["sms"]),
        "same second, START first"
    );
    // An operator's DELETE never holds back a STOP the person sent before it
    // (its webhook retried late).
    let deleted = app
        .client
        .delete(format!("{}/api/v1/opt-outs/%2B14155550123", app.address))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(opted_out(app).await, json!([]));
    let late_stop = keyword("mo-stop-6", "STOP", "2026-01-01T10:04:00.000+0000");
    assert_eq!(sender.inbound(vec![late_stop]).await, 200);
    assert_eq!(
        opted_out(app).await,
        json!(["sms"]),
        "a late STOP still counts"
    );
}

#[tokio::test]
async fn inbound_opt_out_changes_follow_the_person_s_order_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(
        dir.path(),
        &[("INFOBIP_WEBHOOK_SECRET", infobip::WEBHOOK_SECRET)],
    )
    .await;
    scenario(&app).await;
}

#[tokio::test]
async fn inbound_opt_out_changes_follow_the_person_s_order_in_dynamodb() {
    let aws = crate::helpers::aws::emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let table = aws.status_table().await;
    let app = TestApp::spawn_from_config(&config_with(&[
        ("SNS_TOPIC_ARN", tq.topic_arn.as_str()),
        ("STATUS_TABLE", table.as_str()),
        ("INFOBIP_WEBHOOK_SECRET", infobip::WEBHOOK_SECRET),
    ]))
    .await;
    scenario(&app).await;
}

/// An opt-out change whose event could not be published (the events topic
/// refused it: the webhook answered 503) is not lost: the provider's retry of
/// the same webhook, refused as a replay by the ordering, publishes it first.
/// (Before: the change was written, the retry changed nothing, the event was
/// never sent.)
#[tokio::test]
async fn an_opt_out_event_that_could_not_be_published_goes_with_the_retry() {
    use herald::events::sns::SnsEvents;
    use herald::optout::{Change, OptOutUpdate};
    use herald::status::OptOutStore;
    use herald::status::dynamodb::DynamoStatusStore;
    use std::time::Duration;
    let aws = crate::helpers::aws::emulator().await;
    let table = aws.status_table().await;
    let (events_topic, events_queue) = aws.events_topic().await;
    let missing = format!(
        "arn:aws:sns:us-east-1:123456789012:{}",
        crate::helpers::aws::unique_name("gone")
    );
    let store = |topic: &str| {
        DynamoStatusStore::new(
            aws.dynamodb.clone(),
            &table,
            Duration::from_secs(86_400),
            Some(SnsEvents::new(aws.sns.clone(), topic)),
        )
    };
    let stop = OptOutUpdate {
        tenant: "default".into(),
        number: "+14155550123".into(),
        change: Change::Add("sms".into()),
        source: "inbound-sms".into(),
        at_ms: 1_767_261_610_000,
        inbound_id: Some("mo-event".into()),
    };
    assert!(
        store(&missing)
            .change_opt_outs(vec![stop.clone()])
            .await
            .is_err()
    );
    store(&events_topic)
        .change_opt_outs(vec![stop])
        .await
        .unwrap();
    let received = aws.drain(&events_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1, "the opt-out's event was published");
    let event: Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(event["type"], "recipient.opt-out");
    assert_eq!(event["optedOut"], true);
    let again = aws.drain(&events_queue, 1, Duration::from_secs(2)).await;
    assert!(again.is_empty(), "and once");
}
