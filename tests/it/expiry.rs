//! Expiring messages (`expiresAt`, `validitySeconds`): not handed to a
//! provider after their expiry, on the embedded default and through SQS;
//! Infobip gets the validity left.

use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::helpers::infobip::{self, FakeInfobip};
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{TO, TestApp, config_with, pairs};

#[tokio::test]
async fn a_message_that_expires_while_the_provider_fails_is_failed_expired() {
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(ResponseTemplate::new(503))
        .mount(&whatsapp.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars = whatsapp.vars();
    vars.extend([
        ("DELIVERY_RETRY_BASE_MS", "50".to_owned()),
        ("DELIVERY_RETRY_MAX_MS", "100".to_owned()),
        ("DELIVERY_MAX_ATTEMPTS", "100".to_owned()),
        // The circuit opens after a few failures; its probes go on.
        ("CIRCUIT_COOLDOWN_MS", "300".to_owned()),
    ]);
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&vars)).await;
    let id = app
        .send_accepted(&json!({"to": TO, "message": "hi", "validitySeconds": 2}))
        .await;
    let view = app.wait_for_status(&id, "failed").await;
    assert_eq!(view["error"]["code"], "expired", "{view}");
    let tries = whatsapp.bodies().await.len();
    assert!(tries >= 1, "it was tried while it was valid");
    // Checks that nothing else happens: no attempt after the expiry.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(whatsapp.bodies().await.len(), tries);
}

#[tokio::test]
async fn a_fallback_a_report_starts_after_the_expiry_is_not_sent() {
    use crate::helpers::meta::{self, MetaSender};
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.EXP"))
        .mount(&whatsapp.server)
        .await;
    let app = infobip::gateway(&data, &fake, Some(&whatsapp), None).await;
    let id = app
        .send_accepted(&json!({"to": TO, "message": "hi", "validitySeconds": 1,
            "fallback": {"channel": "sms", "message": "hi by SMS"}}))
        .await;
    app.wait_for_status(&id, "submitted").await;
    // Time itself is what is tested: Meta's report comes after the expiry.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let failed = meta::failed("wamid.EXP", 131_026, "Message undeliverable", 1_750_000_005);
    let meta_sender = MetaSender::new(&app.address);
    assert_eq!(
        meta_sender.post(&meta::payload(vec![failed], vec![])).await,
        200
    );
    let view = app.wait_for_status_on(&id, "failed", "sms").await;
    assert_eq!(view["error"]["code"], "expired", "{view}");
    assert!(fake.bodies().await.is_empty(), "no SMS went to Infobip");
}

#[tokio::test]
async fn infobip_gets_the_validity_left() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let app = infobip::gateway(&data, &fake, None, None).await;
    app.send_accepted(
        &json!({"channel": "sms", "to": TO, "message": "code 1234", "validitySeconds": 600}),
    )
    .await;
    let body = &fake.wait_for_requests(1).await[0];
    let validity = &body["messages"][0]["options"]["validityPeriod"];
    assert_eq!(validity["timeUnit"], "SECONDS", "{body}");
    let amount = validity["amount"].as_i64().unwrap();
    assert!((590..=600).contains(&amount), "{amount}");
}

#[tokio::test]
async fn a_refused_expiry_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &[]).await;
    for (body, field) in [
        (
            json!({"to": TO, "message": "hi", "expiresAt": "2020-01-01T00:00:00Z"}),
            "expiresAt",
        ),
        (
            json!({"to": TO, "message": "hi", "validitySeconds": 0}),
            "validitySeconds",
        ),
    ] {
        let (status, answer) = app.send(&body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn through_sqs_a_message_past_its_expiry_is_failed_not_sent() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let (tq, table) = (&stack.tq, &stack.table);
    let gateway = TestApp::spawn_from_config(&config_with(&stack.vars())).await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.LATE"))
        .mount(&whatsapp.server)
        .await;
    let id = gateway
        .send_accepted(&json!({"to": TO, "message": "too late", "validitySeconds": 1}))
        .await;
    // Time itself is what is tested: the consumer first sees the message
    // after its expiry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = crate::helpers::process::consumer(&tq.queue_url, table, &whatsapp.vars(), &log);
    let view = gateway.wait_for_status(&id, "failed").await;
    child.kill();
    assert_eq!(view["error"]["code"], "expired", "{view}");
    assert!(
        whatsapp.bodies().await.is_empty(),
        "nothing went to the Cloud API"
    );
}
