//! Opt-outs on the embedded default: inbound STOP and START keywords (by SMS
//! and WhatsApp), the 422 and the failed failover they cause, their events,
//! and the opt-out API (put, read, delete, refusals).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::event_receiver::EventReceiver;
use crate::helpers::infobip::{self, FakeInfobip, InfobipSender};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::{KEY, TO};

#[tokio::test]
async fn an_inbound_stop_opts_out_and_the_next_send_is_refused_with_nothing_sent() {
    let data = tempfile::tempdir().unwrap();
    let (fake, whatsapp) = infobip::whatsapp_unreachable().await;
    let receiver = EventReceiver::start().await;
    let app = infobip::gateway(&data, &fake, Some(&whatsapp), Some(&receiver)).await;
    let sender = InfobipSender::new(&app.address);

    // " Stop " by SMS: opted out of SMS, and told as an event.
    assert_eq!(
        sender
            .inbound(vec![infobip::inbound("mo-1", "14155550123", " Stop ")])
            .await,
        200
    );
    let (code, refused) = app
        .send(&json!({"channel": "sms", "to": TO, "message": "hello"}))
        .await;
    assert_eq!(code, 422);
    assert_eq!(refused["code"], "recipient-opted-out");
    let opt_out = app.get_json("/api/v1/opt-outs/%2B14155550123", KEY).await;
    assert_eq!(opt_out["channels"], json!(["sms"]));
    assert_eq!(opt_out["source"], "inbound-sms");
    // WhatsApp is another channel; its failover to SMS is failed, not sent.
    let (code, answer) = app
        .send(&json!({"to": TO, "message": "hi", "fallback": {"channel": "sms", "message": "hi"}}))
        .await;
    assert_eq!(code, 202);
    // The WhatsApp leg fails first (131026), then the SMS leg is refused.
    let view = app
        .wait_for_status_on(answer["messageId"].as_str().unwrap(), "failed", "sms")
        .await;
    assert_eq!(view["error"]["code"], "opted-out");
    assert!(fake.bodies().await.is_empty(), "nothing went to Infobip");

    // A WhatsApp STOP opts out of WhatsApp too; START by SMS takes SMS back.
    let meta = MetaSender::new(&app.address);
    let mut stop = meta::inbound("wamid.IN1", "text", json!({"body": "STOP"}));
    stop["from"] = json!("14155550123");
    assert_eq!(meta.post(&meta::payload(vec![], vec![stop])).await, 200);
    let (code, _) = app.send(&json!({"to": TO, "message": "hi"})).await;
    assert_eq!(code, 422);
    assert_eq!(
        sender
            .inbound(vec![{
                // Sent after the STOP (a START at the STOP's very time would
                // lose to it: a tie goes to the STOP).
                let mut start = infobip::inbound("mo-2", "14155550123", "START");
                start["receivedAt"] = json!("2026-01-01T10:05:00.000+0000");
                start
            }])
            .await,
        200
    );
    let (code, _) = app
        .send(&json!({"channel": "sms", "to": TO, "message": "welcome back"}))
        .await;
    assert_eq!(code, 202);
    fake.wait_for_requests(1).await;

    let events = receiver
        .wait_for(Duration::from_secs(10), |e| {
            e.iter()
                .filter(|e| e["type"] == "recipient.opt-out")
                .count()
                >= 3
        })
        .await;
    let changes: Vec<(&str, bool)> = events
        .iter()
        .filter(|e| e["type"] == "recipient.opt-out")
        .map(|e| {
            (
                e["channel"].as_str().unwrap(),
                e["optedOut"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(changes, [("sms", true), ("whatsapp", true), ("sms", true)]);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "message.inbound" && e["channel"] == "sms")
    );
}

#[tokio::test]
async fn the_opt_out_api_puts_reads_and_deletes() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::start().await;
    let app = infobip::gateway(&data, &fake, None, None).await;
    let url = |n: &str| format!("{}/api/v1/opt-outs/{n}", app.address);
    let client = &app.client;

    let r = client
        .get(url("%2B14155550123"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client.get(url("%2B14155550123")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .put(url("+14155550123"))
        .header("x-api-key", KEY)
        .json(&json!({"channels": ["all"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["channels"], json!(["all"]));
    assert_eq!(body["number"], "+14155550123");
    let (code, _) = app
        .send(&json!({"channel": "sms", "to": TO, "message": "x"}))
        .await;
    assert_eq!(code, 422);

    for (number, body, field) in [
        ("14155550123", json!({"channels": ["sms"]}), None),
        (
            "%2B14155550123",
            json!({"channels": ["fax"]}),
            Some("channels[0]"),
        ),
        ("%2B14155550123", json!({"channels": []}), Some("channels")),
        (
            "%2B14155550123",
            json!({"channel": ["sms"]}),
            Some("channel"),
        ),
    ] {
        let r = client
            .put(url(number))
            .header("x-api-key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{number} {body}");
        if let Some(field) = field {
            let problem: Value = r.json().await.unwrap();
            assert_eq!(problem["errors"][0]["field"], field);
        }
    }
    let r = client
        .delete(url("%2B14155550123"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (code, _) = app
        .send(&json!({"channel": "sms", "to": TO, "message": "x"}))
        .await;
    assert_eq!(code, 202);
}
