//! The customer-service window on the embedded default: learnt from inbound
//! messages (by the person's message time) and from 131047, checked at the
//! edge (422, or straight to the SMS fallback) and by the consumer before
//! sending, `WHATSAPP_WINDOW=off`, and `GET /api/v1/contacts/{number}`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::infobip::{self, FakeInfobip};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, TestApp, eventually, pairs};

/// The person who writes in (`meta::CUSTOMER`), E.164.
fn person() -> String {
    format!("+{}", meta::CUSTOMER)
}

fn text(body: &str) -> Value {
    json!({"to": person(), "message": body})
}

fn template() -> Value {
    json!({"to": person(), "template": {"name": "order_update", "language": "en_US"}})
}

/// A WhatsApp message from the person to the deployment's number, sent
/// `ago_s` seconds ago by their clock.
fn inbound_payload(id: &str, ago_s: i64) -> Value {
    let mut message = meta::inbound(id, "text", json!({"body": "hello"}));
    message["timestamp"] = json!((chrono::Utc::now().timestamp() - ago_s).to_string());
    meta::payload(vec![], vec![message])
}

struct Conversation {
    app: TestApp,
    whatsapp: FakeWhatsApp,
    infobip: FakeInfobip,
    meta: MetaSender,
    _data: tempfile::TempDir,
}

impl Conversation {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let whatsapp = FakeWhatsApp::start().await;
        let infobip = FakeInfobip::accepting().await;
        let mut vars = whatsapp.vars();
        vars.extend(infobip.vars(infobip::PUBLIC));
        vars.extend(meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
        let mut all = pairs(&vars);
        all.extend_from_slice(extra);
        let app = TestApp::spawn_embedded(data.path(), &all).await;
        let meta = MetaSender::new(&app.address);
        Self {
            app,
            whatsapp,
            infobip,
            meta,
            _data: data,
        }
    }

    async fn answer_sends(&self, response: wiremock::ResponseTemplate) {
        self.whatsapp.server.reset().await;
        wa::send_endpoint()
            .respond_with(response)
            .mount(&self.whatsapp.server)
            .await;
    }

    async fn wrote(&self, id: &str, ago_s: i64) {
        assert_eq!(self.meta.post(&inbound_payload(id, ago_s)).await, 200);
    }
}

#[tokio::test]
async fn a_free_form_send_outside_the_window_is_refused_and_a_template_goes() {
    let c = Conversation::start(&[]).await;
    c.answer_sends(wa::success(meta::CUSTOMER, "wamid.OK"))
        .await;
    // Never heard from: unknown, the send goes.
    c.app.send_accepted(&text("first contact")).await;
    // They wrote 25 hours ago (their clock, not the webhook's arrival).
    c.wrote("wamid.IN-OLD", 25 * 3600).await;
    let (code, refused) = c.app.send(&text("too late")).await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(refused["code"], "outside-customer-service-window");
    let at = refused["lastInboundAt"].as_str().expect("lastInboundAt");
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp();
    assert!((chrono::Utc::now().timestamp() - 25 * 3600 - at).abs() < 5);
    // A template may open the conversation.
    let id = c.app.send_accepted(&template()).await;
    c.app.wait_for_status(&id, "submitted").await;
    // They write again: free-form goes at once (this gateway forgot its cache).
    c.wrote("wamid.IN-NOW", 1).await;
    let id = c.app.send_accepted(&text("welcome back")).await;
    c.app.wait_for_status(&id, "submitted").await;
    let contact = c
        .app
        .get_json(&format!("/api/v1/contacts/%2B{}", meta::CUSTOMER), KEY)
        .await;
    assert_eq!(contact["windowOpen"], true, "{contact}");
    assert_eq!(contact["from"], wa::PHONE_NUMBER_ID);
    assert_eq!(contact["optOuts"], json!([]));
    // A webhook replayed later with the old message moves nothing back.
    c.wrote("wamid.IN-OLD", 25 * 3600).await;
    assert_eq!(c.app.send(&text("still open")).await.0, 202);
}

#[tokio::test]
async fn outside_the_window_a_fallback_goes_straight_to_sms() {
    let c = Conversation::start(&[]).await;
    c.answer_sends(wa::success(meta::CUSTOMER, "wamid.NEVER"))
        .await;
    c.wrote("wamid.IN-OLD", 30 * 3600).await;
    let id = c
        .app
        .send_accepted(&json!({"to": person(), "message": "your code is 1234",
            "fallback": {"channel": "sms", "message": "your code is 1234"}}))
        .await;
    c.infobip.wait_for_requests(1).await;
    let view = c.app.wait_for_status(&id, "submitted").await;
    assert_eq!(view["channel"], "sms");
    assert!(
        c.whatsapp.bodies().await.is_empty(),
        "WhatsApp was not asked"
    );
    let why = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["status"] == "failed")
        .cloned()
        .expect("the WhatsApp leg's failure in the history");
    assert_eq!(
        why["error"]["code"], "outside-customer-service-window",
        "{view}"
    );
}

#[tokio::test]
async fn a_131047_closes_the_window_for_the_next_free_form_send() {
    let c = Conversation::start(&[]).await;
    // Meta answers 131047: the message fails, and the window is known closed.
    c.answer_sends(wa::graph_error(400, 131_047, "Re-engagement message", ""))
        .await;
    let id = c.app.send_accepted(&text("hello?")).await;
    c.app.wait_for_status(&id, "failed").await;
    let (code, refused) = c.app.send(&text("hello again?")).await;
    assert_eq!(
        (code, refused["code"].as_str()),
        (422, Some("outside-customer-service-window"))
    );
    assert_eq!(refused["lastInboundAt"], Value::Null, "never heard from");

    // A report of 131047 for another person closes theirs too.
    c.answer_sends(wa::success("14155550123", "wamid.SENT"))
        .await;
    let other = json!({"to": "+14155550123", "message": "hi"});
    let id = c.app.send_accepted(&other).await;
    c.app.wait_for_status(&id, "submitted").await;
    let report = meta::failed(
        "wamid.SENT",
        131_047,
        "Re-engagement message",
        1_900_000_000,
    );
    assert_eq!(c.meta.post(&meta::payload(vec![report], vec![])).await, 200);
    let (code, _) = c.app.send(&other).await;
    assert_eq!(code, 422);
}

#[tokio::test]
async fn the_consumer_checks_the_window_again_before_sending() {
    // The gateway saw nothing; the window closes while the message waits
    // (here: a 131047 report lands before the worker's retry).
    let c = Conversation::start(&[("DELIVERY_RETRY_BASE_MS", "1500")]).await;
    c.answer_sends(wiremock::ResponseTemplate::new(503)).await;
    let id = c.app.send_accepted(&text("queued")).await;
    eventually("the first attempt", Duration::from_secs(10), async || {
        (!c.whatsapp.bodies().await.is_empty()).then_some(())
    })
    .await;
    let mut report = meta::failed(
        "wamid.OTHER",
        131_047,
        "Re-engagement message",
        1_900_000_000,
    );
    report["recipient_id"] = json!(meta::CUSTOMER);
    assert_eq!(c.meta.post(&meta::payload(vec![report], vec![])).await, 200);
    let view = c.app.wait_for_status(&id, "failed").await;
    assert_eq!(view["error"]["code"], "outside-customer-service-window");
    assert_eq!(
        c.whatsapp.bodies().await.len(),
        1,
        "no second WhatsApp attempt"
    );
}

#[tokio::test]
async fn with_the_window_off_nothing_is_held_back() {
    let c = Conversation::start(&[("WHATSAPP_WINDOW", "off")]).await;
    c.answer_sends(wa::success(meta::CUSTOMER, "wamid.OK"))
        .await;
    c.wrote("wamid.IN-OLD", 25 * 3600).await;
    let id = c.app.send_accepted(&text("sent anyway")).await;
    c.app.wait_for_status(&id, "submitted").await;
}

/// With DynamoDB (moto): the window is learnt from the webhook and checked
/// at the edge, and the consumer binary's 131047 closes it in the table.
#[tokio::test]
async fn with_dynamodb_the_window_is_learnt_checked_and_closed() {
    use crate::helpers::aws::emulator;
    use crate::helpers::process::KilledOnDrop;
    use crate::helpers::{TO, config_with};
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let table = aws.status_table().await;
    let whatsapp = FakeWhatsApp::start().await;
    let mut vars = whatsapp.vars();
    vars.push(("SNS_TOPIC_ARN", tq.topic_arn.clone()));
    vars.push(("STATUS_TABLE", table.clone()));
    vars.extend(meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
    let app = TestApp::spawn_from_config(&config_with(&pairs(&vars))).await;
    let meta = MetaSender::new(&app.address);
    assert_eq!(
        meta.post(&inbound_payload("wamid.IN-AWS", 26 * 3600)).await,
        200
    );
    let (code, refused) = app.send(&text("too late")).await;
    assert_eq!(
        (code, refused["code"].as_str()),
        (422, Some("outside-customer-service-window"))
    );
    assert!(refused["lastInboundAt"].is_string());
    let contact = app
        .get_json(&format!("/api/v1/contacts/%2B{}", meta::CUSTOMER), KEY)
        .await;
    assert_eq!(contact["windowOpen"], false, "{contact}");

    // Someone never heard from: the send goes; Meta answers 131047 to the
    // consumer, which closes the window in the table.
    wa::send_endpoint()
        .respond_with(wa::graph_error(400, 131_047, "Re-engagement message", ""))
        .mount(&whatsapp.server)
        .await;
    let other = json!({"to": TO, "message": "hello?"});
    let id = app.send_accepted(&other).await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_herald-consumer"))
        .env("SQS_QUEUE_URL", &tq.queue_url)
        .env("STATUS_TABLE", &table)
        .envs(whatsapp.vars())
        .env_remove("DELIVERY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the consumer binary starts");
    let child = KilledOnDrop::new(child);
    app.wait_for_status(&id, "failed").await;
    let path = format!("/api/v1/contacts/%2B{}", &TO[1..]);
    let contact = eventually("the window closed", Duration::from_secs(20), async || {
        let c = app.get_json(&path, KEY).await;
        (c["windowOpen"] == false).then_some(c)
    })
    .await;
    child.kill();
    assert_eq!(contact["lastInboundAt"], Value::Null);
}

/// Meta's answer to a read receipt, for the receipts only.
async fn accept_read_receipts(whatsapp: &FakeWhatsApp) {
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({"status": "read"}),
        ))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .with_priority(1)
        .mount(&whatsapp.server)
        .await;
}

async fn post_read(app: &TestApp, id: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}/api/v1/inbound/{id}/read", app.address))
        .header("x-api-key", KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_received_message_is_marked_read_from_the_number_that_received_it() {
    let c = Conversation::start(&[]).await;
    accept_read_receipts(&c.whatsapp).await;
    c.wrote("wamid.IN-READ", 10).await;
    let (code, _) = post_read(
        &c.app,
        "wamid.IN-READ",
        Some(json!({"typingIndicator": true})),
    )
    .await;
    assert_eq!(code, 204);
    let requests = c.whatsapp.server.received_requests().await.unwrap();
    let receipt = requests.last().unwrap();
    assert_eq!(
        receipt.url.path(),
        format!("/{}/{}/messages", wa::VERSION, wa::PHONE_NUMBER_ID)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&receipt.body).unwrap(),
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN-READ",
            "typing_indicator": {"type": "text"}})
    );
    assert_eq!(post_read(&c.app, "wamid.IN-READ", None).await.0, 204);
    let (code, answer) = post_read(&c.app, "wamid.NEVER-RECEIVED", None).await;
    assert_eq!(
        (code, answer["code"].as_str()),
        (404, Some("inbound-not-found"))
    );
    let (code, answer) = post_read(&c.app, "wamid.IN-READ", Some(json!({"typing": 1}))).await;
    assert_eq!(
        (code, answer["errors"][0]["field"].as_str()),
        (400, Some("typingIndicator"))
    );
}

#[tokio::test]
async fn with_auto_read_every_inbound_message_is_marked_read() {
    let c = Conversation::start(&[("WHATSAPP_AUTO_READ", "on")]).await;
    accept_read_receipts(&c.whatsapp).await;
    c.wrote("wamid.IN-AUTO", 5).await;
    eventually("the read receipt", Duration::from_secs(10), async || {
        c.whatsapp
            .bodies()
            .await
            .iter()
            .any(|b| b["status"] == "read" && b["message_id"] == "wamid.IN-AUTO")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_dynamodb_a_received_message_is_marked_read() {
    let aws = crate::helpers::aws::emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let table = aws.status_table().await;
    let whatsapp = FakeWhatsApp::start().await;
    accept_read_receipts(&whatsapp).await;
    let mut vars = whatsapp.vars();
    vars.push(("SNS_TOPIC_ARN", tq.topic_arn.clone()));
    vars.push(("STATUS_TABLE", table.clone()));
    vars.extend(meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
    let app = TestApp::spawn_from_config(&crate::helpers::config_with(&pairs(&vars))).await;
    let meta = MetaSender::new(&app.address);
    assert_eq!(
        meta.post(&inbound_payload("wamid.IN-AWS-READ", 5)).await,
        200
    );
    assert_eq!(post_read(&app, "wamid.IN-AWS-READ", None).await.0, 204);
    assert_eq!(post_read(&app, "wamid.UNKNOWN", None).await.0, 404);
    assert_eq!(whatsapp.bodies().await.len(), 1);
}
