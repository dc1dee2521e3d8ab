//! WhatsApp → SMS failover on the embedded default: a send WhatsApp answers
//! "cannot reach" goes by SMS under the same message id, a later "cannot
//! reach" report from Meta sends the fallback once, and other failures never
//! fail over.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::event_receiver::EventReceiver;
use crate::helpers::infobip::{self, FakeInfobip};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{TO, history_legs};

#[tokio::test]
async fn a_whatsapp_message_that_cannot_reach_the_person_goes_by_sms() {
    let data = tempfile::tempdir().unwrap();
    let (fake, whatsapp) = infobip::whatsapp_unreachable().await;
    // Infobip fails once: the retry goes straight to the SMS leg.
    fake.answer_text(
        "Your table is ready (SMS)",
        infobip::api_error(503, "E503", "busy"),
        Some(1),
    )
    .await;
    let receiver = EventReceiver::start().await;
    let app = infobip::gateway(&data, &fake, Some(&whatsapp), Some(&receiver)).await;

    let (code, answer) = app.send(&json!({"to": TO, "text": {"body": "Your table is ready"},
            "fallback": {"channel": "sms", "message": "Your table is ready (SMS)", "sender": "Bistro"}}),
    )
    .await;
    assert_eq!(code, 202);
    let id = answer["messageId"].as_str().unwrap().to_owned();
    let body = &fake.wait_for_requests(2).await[1];
    assert_eq!(
        body["messages"][0]["content"]["text"],
        "Your table is ready (SMS)"
    );
    assert_eq!(
        whatsapp.bodies().await.len(),
        1,
        "WhatsApp was not asked again"
    );
    assert_eq!(body["messages"][0]["sender"], "Bistro");
    assert_eq!(
        body["messages"][0]["destinations"][0]["messageId"],
        id.as_str(),
        "the same message id"
    );

    let view = infobip::report_sms_delivered(&app, &id).await;
    let legs = history_legs(&view);
    assert_eq!(
        legs,
        [
            ("accepted", "whatsapp"),
            ("failed", "whatsapp"),
            ("submitted", "sms"),
            ("delivered", "sms")
        ]
    );
    assert_eq!(view["history"][1]["error"]["code"], 131_026);
    assert_eq!(view["channel"], "sms");
    assert_eq!(view["error"], Value::Null);
    let events = receiver
        .wait_for(Duration::from_secs(10), |e| {
            e.iter().any(|e| e["status"] == "delivered")
        })
        .await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["channel"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("failed", "whatsapp"),
            ("submitted", "sms"),
            ("delivered", "sms")
        ]
    );

    // Never on a failure that is not "cannot reach": 131050 is the person's choice.
    whatsapp.server.reset().await;
    wa::send_endpoint()
        .respond_with(wa::graph_error(400, 131_050, "User stopped marketing", ""))
        .mount(&whatsapp.server)
        .await;
    let (_, chose) = app.send(&json!({"to": TO, "message": "promo", "fallback": {"channel": "sms", "message": "promo"}}),
    )
    .await;
    let view = app
        .wait_for_status(chose["messageId"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(view["channel"], "whatsapp");
    assert_eq!(fake.bodies().await.len(), 2, "no SMS for 131050");
}

#[tokio::test]
async fn a_cannot_reach_report_from_meta_sends_the_fallback_once() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.LATER"))
        .mount(&whatsapp.server)
        .await;
    let app = infobip::gateway(&data, &fake, Some(&whatsapp), None).await;
    let (_, answer) = app
        .send(
            &json!({"to": TO, "message": "Your visit is tomorrow", "callbackData": "visit-9",
            "fallback": {"channel": "sms", "message": "Your visit is tomorrow (SMS)"}}),
        )
        .await;
    let id = answer["messageId"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "submitted").await;
    assert!(
        fake.bodies().await.is_empty(),
        "WhatsApp took it: no SMS yet"
    );

    // Meta reports 131047 (the 24-hour window) later, twice.
    let meta = MetaSender::new(&app.address);
    let failed = meta::failed(
        "wamid.LATER",
        131_047,
        "Re-engagement message",
        1_750_000_005,
    );
    assert_eq!(
        meta.post(&meta::payload(vec![failed.clone()], vec![]))
            .await,
        200
    );
    assert_eq!(meta.post(&meta::payload(vec![failed], vec![])).await, 200);
    let body = &fake.wait_for_requests(1).await[0];
    assert_eq!(
        body["messages"][0]["content"]["text"],
        "Your visit is tomorrow (SMS)"
    );
    assert_eq!(
        body["messages"][0]["destinations"][0]["messageId"],
        id.as_str()
    );
    assert_eq!(body["messages"][0]["webhooks"]["callbackData"], "visit-9");
    let view = infobip::report_sms_delivered(&app, &id).await;
    let legs = history_legs(&view);
    assert_eq!(
        legs,
        [
            ("accepted", "whatsapp"),
            ("submitted", "whatsapp"),
            ("failed", "whatsapp"),
            ("submitted", "sms"),
            ("delivered", "sms")
        ]
    );
    // Not a wait for an outcome: time for a second SMS to show up, if one were sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.bodies().await.len(),
        1,
        "the repeated report sent nothing more"
    );
}
