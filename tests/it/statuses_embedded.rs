//! Statuses, WhatsApp webhooks and events on the embedded default, end to end:
//! a send through the fake Graph API, Meta's signed reports (batched, repeated,
//! shuffled, skipping statuses, early), `GET /api/v1/messages/{id}`, and
//! events POSTed to a receiver that verifies the Standard Webhooks signature.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::body_partial_json;

use crate::helpers::event_receiver::{self, EventReceiver};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::process::GatewayProcess;
use crate::helpers::whatsapp::{FakeWhatsApp, send_endpoint, success};
use crate::helpers::{
    KEY, OTHER_KEY, TO, TestApp, config_with, eventually, history_statuses, pairs,
};

/// A gateway on the embedded default delivering to `fake`, with the WhatsApp
/// webhook on and events to `events` (when given).
async fn gateway(
    data: &tempfile::TempDir,
    fake: &FakeWhatsApp,
    events: Option<&EventReceiver>,
) -> TestApp {
    let whatsapp = fake.vars();
    let mut vars = pairs(&whatsapp);
    vars.extend([
        ("DELIVERY_RETRY_BASE_MS", "20"),
        ("DELIVERY_RETRY_MAX_MS", "100"),
    ]);
    vars.extend(meta::webhook_vars());
    if let Some(receiver) = events {
        vars.push(("EVENTS_WEBHOOK_URL", receiver.url.as_str()));
        vars.push(("EVENTS_WEBHOOK_SECRET", event_receiver::SECRET));
    }
    TestApp::spawn_embedded(data.path(), &vars).await
}

/// Mounts a success answering `wamid` for the text `body`.
async fn answers(fake: &FakeWhatsApp, body: &str, wamid: &str) {
    send_endpoint()
        .and(body_partial_json(json!({"text": {"body": body}})))
        .respond_with(success("14155550123", wamid))
        .mount(&fake.server)
        .await;
}

async fn send_text(app: &TestApp, body: &str) -> String {
    app.send_accepted(&json!({"to": TO, "text": {"body": body}, "callbackData": "order-42"}))
        .await
}

fn statuses_of(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["type"] == "message.status")
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn reports_in_any_order_and_repeated_end_in_one_status_and_one_event_per_change() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    answers(&fake, "lifecycle", "wamid.LIFE").await;
    let receiver = EventReceiver::start().await;
    let app = gateway(&data, &fake, Some(&receiver)).await;

    let id = send_text(&app, "lifecycle").await;
    let view = app.wait_for_status(&id, "submitted").await;
    assert_eq!(view["providerMessageId"], "wamid.LIFE");

    // Meta skips `delivered`, repeats everything and shuffles the order.
    let sender = MetaSender::new(&app.address);
    let reports = [
        meta::status("wamid.LIFE", "sent", 1_750_000_001),
        meta::status("wamid.LIFE", "read", 1_750_000_003),
    ];
    sender.post_shuffled_twice(&reports, 7).await;

    let view = app.wait_for_status(&id, "read").await;
    assert_eq!(
        history_statuses(&view),
        ["accepted", "submitted", "sent", "read"]
    );
    assert_eq!(
        view["history"][3]["at"], "2025-06-15T15:06:43.000Z",
        "Meta's own time"
    );
    assert_eq!(view["history"][3]["providerStatus"], "read");
    assert_eq!(view["history"][1]["attempt"], 1);
    assert_eq!(view["callbackData"], "order-42");
    assert_eq!(view["to"], TO);
    assert_eq!(view["error"], Value::Null);

    // One event per change: submitted, then sent and read in whichever
    // order they came, never twice, each signed.
    receiver
        .wait_for(Duration::from_secs(10), |e| {
            statuses_of(e).contains(&"read")
        })
        .await;
    // Not a wait for an outcome: time for a duplicate to show up, if one were sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = receiver.events();
    let mut seen = statuses_of(&events);
    assert_eq!(seen[0], "submitted");
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        statuses_of(&events).len(),
        seen.len(),
        "a duplicate event: {events:#?}"
    );
    assert!(seen.contains(&"read"));
    let read = events.iter().find(|e| e["status"] == "read").unwrap();
    assert_eq!(read["messageId"], id.as_str());
    assert_eq!(read["providerMessageId"], "wamid.LIFE");
    assert_eq!(read["callbackData"], "order-42");
    assert_eq!(read["channel"], "whatsapp");
    assert_eq!(read["version"], 1);
    assert_eq!(receiver.bad_signatures(), 0);
}

#[tokio::test]
async fn a_report_that_arrives_before_the_send_is_recorded_is_kept_and_merged() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    // Meta answers the send slowly; its `delivered` webhook comes first.
    send_endpoint()
        .and(body_partial_json(json!({"text": {"body": "early"}})))
        .respond_with(success("14155550123", "wamid.EARLY").set_delay(Duration::from_millis(800)))
        .mount(&fake.server)
        .await;
    let receiver = EventReceiver::start().await;
    let app = gateway(&data, &fake, Some(&receiver)).await;

    let id = send_text(&app, "early").await;
    let sender = MetaSender::new(&app.address);
    assert_eq!(
        sender
            .post(&meta::payload(
                vec![meta::status("wamid.EARLY", "delivered", 1_750_000_005)],
                vec![]
            ))
            .await,
        200
    );
    let view = app
        .message_status(&id, KEY)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        view["status"], "accepted",
        "not merged before the send is recorded"
    );

    let view = app.wait_for_status(&id, "delivered").await;
    assert_eq!(view["providerMessageId"], "wamid.EARLY");
    let events = receiver
        .wait_for(Duration::from_secs(10), |e| {
            statuses_of(e).contains(&"delivered")
        })
        .await;
    assert_eq!(statuses_of(&events), ["submitted", "delivered"]);
}

#[tokio::test]
async fn delivered_after_failed_wins_and_the_failure_stays_in_the_history() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    answers(&fake, "multi-device", "wamid.MD").await;
    let app = gateway(&data, &fake, None).await;
    let id = send_text(&app, "multi-device").await;
    app.wait_for_status(&id, "submitted").await;

    let sender = MetaSender::new(&app.address);
    let failed = meta::failed("wamid.MD", 131_026, "Message undeliverable", 1_750_000_002);
    assert_eq!(sender.post(&meta::payload(vec![failed], vec![])).await, 200);
    let view = app.wait_for_status(&id, "failed").await;
    assert_eq!(
        view["error"],
        json!({"code": 131026, "title": "Message undeliverable", "channel": "whatsapp"})
    );
    // Batched in two entries: sent (lower than failed: ignored) and delivered (wins).
    let both = meta::batched(vec![
        meta::payload(
            vec![meta::status("wamid.MD", "sent", 1_750_000_001)],
            vec![],
        ),
        meta::payload(
            vec![meta::status("wamid.MD", "delivered", 1_750_000_004)],
            vec![],
        ),
    ]);
    assert_eq!(sender.post(&both).await, 200);
    let view = app.wait_for_status(&id, "delivered").await;
    assert_eq!(view["error"], Value::Null);
    assert_eq!(
        history_statuses(&view),
        ["accepted", "submitted", "sent", "delivered", "failed"]
    );
    assert_eq!(view["history"][4]["error"]["code"], 131_026);
}

#[tokio::test]
async fn a_message_is_visible_to_its_key_only_and_unknown_ids_look_the_same() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    answers(&fake, "mine", "wamid.MINE").await;
    let app = gateway(&data, &fake, None).await;
    let id = send_text(&app, "mine").await;
    app.wait_for_status(&id, "submitted").await;

    let foreign = app.message_status(&id, OTHER_KEY).await;
    assert_eq!(foreign.status(), 404);
    let foreign: Value = foreign.json().await.unwrap();
    let unknown: Value = app
        .message_status("0193e3a0-0000-7000-8000-000000000000", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(foreign, unknown, "a foreign id answers like an unknown one");
    assert_eq!(unknown["code"], "message-not-found");
    for odd in ["not-a-uuid", "%27%20OR%201%3D1", "..%2F..%2Fetc"] {
        assert_eq!(app.message_status(odd, KEY).await.status(), 404, "{odd}");
    }
    let no_key = app.get(&format!("/api/v1/messages/{id}")).await;
    assert_eq!(no_key.status(), 401);
}

#[tokio::test]
async fn the_webhook_checks_signature_token_and_size_before_reading() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    let app = gateway(&data, &fake, None).await;
    let sender = MetaSender::new(&app.address);
    let body = meta::payload(
        vec![],
        vec![meta::inbound("wamid.x", "text", json!({"body": "hi"}))],
    )
    .to_string();

    let missing = sender.post_raw(body.as_bytes(), None).await;
    assert_eq!(missing.status(), 401);
    let wrong = meta::signature("not-the-secret", body.as_bytes());
    assert_eq!(
        sender
            .post_raw(body.as_bytes(), Some(&wrong))
            .await
            .status(),
        403
    );
    let tampered = meta::signature(meta::APP_SECRET, body.as_bytes());
    let changed = body.replace("hi", "ho");
    assert_eq!(
        sender
            .post_raw(changed.as_bytes(), Some(&tampered))
            .await
            .status(),
        403
    );
    assert_eq!(
        sender.post_raw(b"{}", Some("sha256=zz")).await.status(),
        403
    );
    assert_eq!(sender.post_raw(b"{}", Some("md5=00")).await.status(), 403);

    // Meta signs the \uXXXX-escaped form of non-ASCII bodies.
    let accented = meta::payload(
        vec![],
        vec![meta::inbound(
            "wamid.é",
            "text",
            json!({"body": "ça va? 👍 @home"}),
        )],
    )
    .to_string();
    let signed_escaped = meta::signature(meta::APP_SECRET, meta::escaped(&accented).as_bytes());
    assert_eq!(
        sender
            .post_raw(accented.as_bytes(), Some(&signed_escaped))
            .await
            .status(),
        200
    );
    let escaped = meta::escaped(&accented);
    assert_eq!(
        sender
            .post_raw(escaped.as_bytes(), Some(&signed_escaped))
            .await
            .status(),
        200
    );

    // Signed but not JSON: a 400, not a 500.
    let junk = b"not json";
    let signed_junk = meta::signature(meta::APP_SECRET, junk);
    assert_eq!(
        sender.post_raw(junk, Some(&signed_junk)).await.status(),
        400
    );

    // Over WEBHOOK_MAX_BODY_BYTES (4 MiB): 413 before the signature is checked.
    let huge = vec![b' '; (4 << 20) + 1];
    assert_eq!(
        sender.post_raw(&huge, Some("sha256=00")).await.status(),
        413
    );

    // The handshake.
    let verify = |mode: &str, token: &str| {
        format!(
            "/webhooks/whatsapp?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444"
        )
    };
    let ok = app.get(&verify("subscribe", meta::VERIFY_TOKEN)).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/plain");
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(app.get(&verify("subscribe", "wrong")).await.status(), 403);
    assert_eq!(
        app.get(&verify("unsubscribe", meta::VERIFY_TOKEN))
            .await
            .status(),
        403
    );
    assert_eq!(app.get("/webhooks/whatsapp").await.status(), 403);
}

#[tokio::test]
async fn webhooks_without_their_secret_are_not_found() {
    let data = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(data.path(), &[]).await;
    let sender = MetaSender::new(&app.address);
    let body = meta::payload(vec![], vec![]).to_string();
    let signed = meta::signature(meta::APP_SECRET, body.as_bytes());
    assert_eq!(
        sender
            .post_raw(body.as_bytes(), Some(&signed))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn every_inbound_type_becomes_one_event_however_often_meta_sends_it() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    let receiver = EventReceiver::start().await;
    let app = gateway(&data, &fake, Some(&receiver)).await;
    let sender = MetaSender::new(&app.address);
    let messages = meta::every_inbound_type();
    let count = messages.len();
    // All in one delivery, then each again alone (Meta's retries).
    assert_eq!(
        sender.post(&meta::payload(vec![], messages.clone())).await,
        200
    );
    for m in messages.iter().rev() {
        assert_eq!(
            sender.post(&meta::payload(vec![], vec![m.clone()])).await,
            200
        );
    }
    receiver
        .wait_for(Duration::from_secs(10), |e| e.len() >= count)
        .await;
    // Not a wait for an outcome: time for a duplicate to show up, if one were sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = receiver.events();
    assert_eq!(
        events.len(),
        count,
        "one event per inbound message: {events:#?}"
    );
    for m in &messages {
        let event = events
            .iter()
            .find(|e| e["providerMessageId"] == m["id"])
            .unwrap_or_else(|| panic!("no event for {m}"));
        assert_eq!(event["type"], "message.inbound");
        assert_eq!(event["from"], "+16505551234");
        assert_eq!(event["contactName"], "Sheena Nelson");
        assert_eq!(event["channel"], "whatsapp");
        assert_eq!(&event["message"], m, "the provider's object, untouched");
    }
}

#[tokio::test]
async fn events_the_receiver_refuses_are_retried_until_accepted() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    let receiver = EventReceiver::start().await;
    receiver.fail_next(3);
    let app = gateway(&data, &fake, Some(&receiver)).await;
    let sender = MetaSender::new(&app.address);
    let m = meta::inbound("wamid.retry", "text", json!({"body": "again"}));
    assert_eq!(sender.post(&meta::payload(vec![], vec![m])).await, 200);
    let events = receiver
        .wait_for(Duration::from_secs(10), |e| !e.is_empty())
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(receiver.requests(), 4, "three refusals, then accepted");
}

/// kill -9 after the webhook's 200 and before the event reached the
/// application: the restarted gateway sends it.
#[tokio::test]
async fn an_acknowledged_report_survives_sigkill_before_its_event_is_sent() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    // The receiver's port, reserved; nothing answers on it yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/events");
    let mut vars = vec![
        ("EVENTS_WEBHOOK_URL", url.as_str()),
        ("EVENTS_WEBHOOK_SECRET", event_receiver::SECRET),
        ("DELIVERY_RETRY_BASE_MS", "50"),
        ("DELIVERY_RETRY_MAX_MS", "200"),
        ("DELIVERY_MAX_ATTEMPTS", "100"),
    ];
    vars.extend(meta::webhook_vars());
    let gateway = GatewayProcess::start(&data_dir, &vars);
    let sender = MetaSender::new(&gateway.address);
    let m = meta::inbound("wamid.kill9", "text", json!({"body": "survive"}));
    assert_eq!(sender.post(&meta::payload(vec![], vec![m])).await, 200);
    // Not a wait for an outcome: the gateway tries (and fails) to send the
    // event to the closed port for a while before the kill.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.kill_hard();

    let receiver = EventReceiver::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    )
    .await;
    let restarted = GatewayProcess::start(&data_dir, &vars);
    let events = receiver
        .wait_for(Duration::from_secs(90), |e| !e.is_empty())
        .await;
    assert_eq!(events[0]["providerMessageId"], "wamid.kill9");
    drop(restarted);
}

/// A report that cannot be recorded is not acknowledged: Meta retries a 503.
#[tokio::test]
async fn a_report_that_cannot_be_recorded_is_a_503_so_meta_retries() {
    use axum::body::Body;
    use axum::http::Request;
    use herald::embedded::EmbeddedQueue;
    use herald::publisher::EmbeddedPublisher;
    use tower::ServiceExt;

    let data = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(data.path(), 0).unwrap();
    let config = config_with(&meta::webhook_vars());
    let mut state = herald::gateway::AppState::new(
        &config,
        std::sync::Arc::new(EmbeddedPublisher::new(queue.clone())),
    );
    state.statuses = Some(std::sync::Arc::new(queue.clone()));
    let router = herald::gateway::router(state);
    let body = meta::payload(
        vec![meta::status("wamid.DISK", "delivered", 1_750_000_000)],
        vec![],
    )
    .to_string();
    let request = || {
        Request::post("/webhooks/whatsapp")
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                meta::signature(meta::APP_SECRET, body.as_bytes()),
            )
            .body(Body::from(body.clone()))
            .unwrap()
    };
    queue.simulate_full_disk(true);
    let refused = router.clone().oneshot(request()).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    queue.simulate_full_disk(false);
    assert_eq!(router.oneshot(request()).await.unwrap().status(), 200);
}

/// Events the receiver never took are dead letters an admin can list,
/// redrive (back to the outbox, delivered) and delete; other keys get `404`.
/// (Before: `event_dead_letters` had no API, no redrive and no expiry.)
#[tokio::test]
async fn event_dead_letters_are_listed_redriven_and_deleted_by_an_admin() {
    let receiver = EventReceiver::start().await;
    receiver.fail_next(1_000);
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(
        dir.path(),
        &[
            ("EVENTS_WEBHOOK_URL", receiver.url.as_str()),
            ("EVENTS_WEBHOOK_SECRET", event_receiver::SECRET),
            ("DELIVERY_MAX_ATTEMPTS", "1"),
            ("ADMIN_KEY_IDS", "ops"),
        ],
    )
    .await;
    let call = |method: reqwest::Method, path: &str, key: &str| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .header("x-api-key", key)
            .header("content-type", "application/json")
    };
    // Two opt-out changes through the API: two events, both refused.
    for number in ["%2B14155550123", "%2B14155550124"] {
        let r = call(
            reqwest::Method::PUT,
            &format!("/api/v1/opt-outs/{number}"),
            crate::helpers::KEY,
        )
        .body(r#"{"channels":["sms"]}"#)
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    let listed = eventually(
        "two event dead letters",
        Duration::from_secs(20),
        async || {
            let list = app.get_json("/api/v1/event-dead-letters", KEY).await;
            let items = list["deadLetters"].as_array().cloned().unwrap_or_default();
            (items.len() == 2).then_some(items)
        },
    )
    .await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["envelope"]["type"], "recipient.opt-out");
    let other = call(
        reqwest::Method::GET,
        "/api/v1/event-dead-letters",
        crate::helpers::OTHER_KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(other.status(), 404, "a key that is not an admin sees none");

    receiver.fail_next(0);
    let first = listed[0]["id"].as_str().unwrap().to_owned();
    let second = listed[1]["id"].as_str().unwrap().to_owned();
    let r = call(
        reqwest::Method::POST,
        &format!("/api/v1/event-dead-letters/{second}/redrive"),
        crate::helpers::OTHER_KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let r = call(
        reqwest::Method::POST,
        &format!("/api/v1/event-dead-letters/{second}/redrive"),
        crate::helpers::KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let events = receiver
        .wait_for(Duration::from_secs(20), |e| {
            e.iter().any(|e| e["eventId"] == second.as_str())
        })
        .await;
    assert!(events.iter().any(|e| e["eventId"] == second.as_str()));
    let r = call(
        reqwest::Method::DELETE,
        &format!("/api/v1/event-dead-letters/{first}"),
        crate::helpers::KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let list = app.get_json("/api/v1/event-dead-letters", KEY).await;
    assert_eq!(list["deadLetters"], json!([]));
}

/// Expiry runs on its own timer: statuses past `STATUS_TTL_DAYS` go without
/// any request arriving to wake the writer (before: only when a request came,
/// at most 5,000 rows per table per minute).
#[tokio::test]
async fn expired_statuses_are_removed_on_a_timer() {
    use herald::status::{Entry, MessageInfo, Status, Update};
    let dir = tempfile::tempdir().unwrap();
    let queue = herald::embedded::EmbeddedQueue::open(dir.path(), 0).unwrap();
    queue.configure_statuses(Duration::from_secs(86_400), false);
    let updates: Vec<Update> = (0..3000)
        .map(|i| Update::Message {
            info: MessageInfo {
                id: format!("old-{i}"),
                api_key_id: "ops".into(),
                tenant: "default".into(),
                channel: "whatsapp".into(),
                to: TO.into(),
                callback_data: None,
                accepted_at_ms: 0,
                fallback: None,
                scheduled_for_ms: None,
                batch_id: None,
                from: None,
                sms_segments: 0,
            },
            status: Status::Submitted,
            entry: Entry::on("whatsapp", 0).by_attempt(1),
            provider_message_id: None,
        })
        .collect();
    queue.record_statuses(updates, vec![]).await.unwrap();
    assert!(
        queue
            .status("old-2999", &herald::status::Scope::Key("ops".into()))
            .await
            .unwrap()
            .is_some()
    );
    queue.configure_statuses(Duration::from_millis(1), false);
    // Before, expiry ran at most once a minute, so within 10 s nothing went.
    eventually("old-2999 expired", Duration::from_secs(10), async || {
        queue
            .status("old-2999", &herald::status::Scope::Key("ops".into()))
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        queue
            .status("old-0", &herald::status::Scope::Key("ops".into()))
            .await
            .unwrap()
            .is_none()
    );
}
