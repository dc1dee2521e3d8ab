//! SMS through Infobip on the embedded default, end to end: validation at
//! the edge, the request the fake Infobip receives, its answers' classes,
//! signed delivery reports (batched, repeated, out of order), WhatsApp → SMS
//! failover, and opt-outs (inbound keywords, the API, the 422).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::event_receiver::{self, EventReceiver};
use crate::helpers::infobip::{self, FakeInfobip, InfobipSender};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, TO, TestApp, TestRouter, config_with, history_legs, history_statuses};

const PUBLIC: &str = "https://gw.example.com";

/// An embedded gateway with Infobip at `fake` (and WhatsApp at `whatsapp`
/// when given), every webhook on, events to `events` when given.
async fn gateway(
    data: &tempfile::TempDir,
    fake: &FakeInfobip,
    whatsapp: Option<&FakeWhatsApp>,
    events: Option<&EventReceiver>,
) -> TestApp {
    let mut vars: Vec<(&str, String)> = vec![
        ("HERALD_DATA_DIR", data.path().to_str().unwrap().to_owned()),
        ("DELIVERY_RETRY_BASE_MS", "20".into()),
        ("DELIVERY_RETRY_MAX_MS", "100".into()),
        ("CIRCUIT_COOLDOWN_MS", "100".into()),
    ];
    vars.extend(fake.vars(PUBLIC));
    if let Some(w) = whatsapp {
        vars.extend([
            ("WHATSAPP_ACCESS_TOKEN", wa::TOKEN.to_owned()),
            ("WHATSAPP_PHONE_NUMBER_ID", wa::PHONE_NUMBER_ID.to_owned()),
            ("WHATSAPP_API_VERSION", wa::VERSION.to_owned()),
            ("WHATSAPP_API_BASE_URL", w.server.uri()),
            ("WHATSAPP_PAIR_RATE", "0".to_owned()),
        ]);
        vars.extend(meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
    }
    if let Some(receiver) = events {
        vars.push(("EVENTS_WEBHOOK_URL", receiver.url.clone()));
        vars.push(("EVENTS_WEBHOOK_SECRET", event_receiver::SECRET.to_owned()));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn_from_config(&config_with(&vars)).await
}

async fn send(app: &TestApp, body: &Value) -> (u16, Value) {
    let response = app.post_message(body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the fake has received `n` send requests.
async fn requests(fake: &FakeInfobip, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let bodies = fake.bodies().await;
        if bodies.len() >= n {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("Infobip never received {n} requests");
}

fn router_with_sms() -> TestRouter {
    TestRouter::with_config(&config_with(&[
        ("INFOBIP_BASE_URL", "https://x.api.infobip.com"),
        ("INFOBIP_API_KEY", "k"),
        ("SMS_MAX_SEGMENTS", "3"),
    ]))
}

#[tokio::test]
async fn an_sms_202_says_its_encoding_characters_and_segments() {
    let router = router_with_sms();
    let cases = [
        ("Hello", "GSM-7", 5, 1),
        ("€100 {ok}", "GSM-7", 9, 1),
        ("Ça va", "GSM-7", 5, 1),
        ("ça va", "UCS-2", 5, 1),
        ("ΔΦΓ", "GSM-7", 3, 1),
        ("Hi 😀", "UCS-2", 4, 1),
        (&*"a".repeat(161), "GSM-7", 161, 2),
        (&*"я".repeat(71), "UCS-2", 71, 2),
    ];
    for (text, encoding, characters, segments) in cases {
        let r = router
            .send(json!({"channel": "sms", "to": TO, "message": text}).to_string())
            .await;
        assert_eq!(
            r.status,
            202,
            "{text}: {}",
            String::from_utf8_lossy(&r.bytes)
        );
        let body = r.json();
        assert_eq!(
            body["sms"],
            json!({"encoding": encoding, "characters": characters, "segments": segments}),
            "{text}"
        );
    }
    // The envelope carries the SMS shape and the channel attribute follows it.
    let env = router.publisher.published().last().cloned().unwrap();
    assert_eq!(env.channel.as_str(), "sms");
    assert_eq!(env.message["type"], "text");
}

#[tokio::test]
async fn bad_sms_requests_are_400s_naming_the_field() {
    let router = router_with_sms();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"channel": "sms", "to": TO, "text": {"body": "x"}}),
            "text",
        ),
        (
            json!({"channel": "sms", "to": TO, "message": "x", "image": {"id": "1"}}),
            "image",
        ),
        (json!({"channel": "sms", "to": TO}), "message"),
        (
            json!({"channel": "sms", "to": TO, "message": ""}),
            "message",
        ),
        (
            json!({"channel": "sms", "to": TO, "message": "a".repeat(460)}),
            "message",
        ),
        (
            json!({"channel": "sms", "to": TO, "message": "x", "sender": "ab"}),
            "sender",
        ),
        (
            json!({"channel": "sms", "to": TO, "message": "x", "sender": "TwelveLetter"}),
            "sender",
        ),
        (
            json!({"channel": "sms", "to": TO, "message": "x", "sender": "Shop!"}),
            "sender",
        ),
        (
            json!({"channel": "sms", "to": TO, "message": "x", "replyTo": "wamid.1"}),
            "replyTo",
        ),
        (
            json!({"channel": "sms", "to": TO, "message": "x", "fallback": {}}),
            "fallback",
        ),
        (
            json!({"channel": "sms", "to": "14155550123", "message": "x"}),
            "to",
        ),
        (
            json!({"channel": "fax", "to": TO, "message": "x"}),
            "channel",
        ),
        (json!({"channel": 1, "to": TO, "message": "x"}), "channel"),
        (
            json!({"to": TO, "message": "x", "sender": "Shop"}),
            "sender",
        ),
        (
            json!({"to": TO, "message": "x", "fallback": {"channel": "sms"}}),
            "fallback.message",
        ),
        (
            json!({"to": TO, "message": "x", "fallback": {"channel": "email", "message": "y"}}),
            "fallback.channel",
        ),
        (
            json!({"to": TO, "message": "x", "fallback": {"channel": "sms", "message": "y", "sender": "!"}}),
            "fallback.sender",
        ),
        (
            json!({"to": TO, "message": "x", "fallback": {"channel": "sms", "message": "y", "extra": 1}}),
            "fallback.extra",
        ),
        (
            json!({"to": TO, "message": "x", "fallback": "sms"}),
            "fallback",
        ),
    ];
    for (body, field) in cases {
        let r = router.send(body.to_string()).await;
        r.assert_problem(400);
        assert!(
            r.error_fields().contains(&field.to_owned()),
            "{body}: {:?}",
            r.error_fields()
        );
    }
    // 154 characters at 3 segments max is fine; 460 (4 segments) was not.
    let r = router
        .send(json!({"channel": "sms", "to": TO, "message": "a".repeat(459)}).to_string())
        .await;
    assert_eq!(r.status, 202);
    assert!(
        router
            .publisher
            .published()
            .iter()
            .all(|e| e.channel.as_str() == "sms")
    );
}

#[tokio::test]
async fn a_channel_without_a_provider_is_a_422_naming_it() {
    let router = TestRouter::with_config(&config_with(&[
        ("WHATSAPP_ACCESS_TOKEN", "t"),
        ("WHATSAPP_PHONE_NUMBER_ID", "1"),
    ]));
    let r = router
        .send(json!({"channel": "sms", "to": TO, "message": "x"}).to_string())
        .await;
    assert_eq!(r.assert_problem(422)["code"], "channel-not-configured");
    let r = router
        .send(
            json!({"to": TO, "message": "x", "fallback": {"channel": "sms", "message": "y"}})
                .to_string(),
        )
        .await;
    let problem = r.assert_problem(422);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("fallback.channel")
    );
    assert!(router.publisher.published().is_empty());
    // The console takes every channel.
    let console = TestRouter::new();
    let r = console
        .send(json!({"channel": "sms", "to": TO, "message": "x"}).to_string())
        .await;
    assert_eq!(r.status, 202);
}

#[tokio::test]
async fn an_sms_goes_to_infobip_and_its_reports_end_in_delivered_with_one_event_per_change() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let receiver = EventReceiver::start().await;
    let app = gateway(&data, &fake, None, Some(&receiver)).await;

    let (code, answer) = send(
        &app,
        &json!({"channel": "sms", "to": "+41793026727", "message": "Your code is 1234 €",
            "callbackData": "order-42"}),
    )
    .await;
    assert_eq!(code, 202);
    let id = answer["messageId"].as_str().unwrap().to_owned();
    let body = &requests(&fake, 1).await[0];
    assert_eq!(
        body,
        &json!({"messages": [{"sender": infobip::SENDER,
            "destinations": [{"to": "41793026727", "messageId": id}],
            "content": {"text": "Your code is 1234 €"},
            "webhooks": {"delivery": {"url": format!("{PUBLIC}/webhooks/infobip")},
                "contentType": "application/json", "callbackData": "order-42"}}]})
    );
    let view = app.wait_for_status(&id, "submitted").await;
    assert_eq!(view["providerMessageId"], id.as_str());
    assert_eq!(view["channel"], "sms");

    // Infobip batches, repeats, and reports the operator after the handset.
    let sender = InfobipSender::new(&app.address);
    assert_eq!(
        sender
            .reports(vec![infobip::delivered(&id), infobip::on_operator(&id)])
            .await,
        200
    );
    assert_eq!(
        sender
            .reports(vec![infobip::on_operator(&id), infobip::delivered(&id)])
            .await,
        200
    );
    let view = app.wait_for_status(&id, "delivered").await;
    assert_eq!(
        history_statuses(&view),
        ["accepted", "submitted", "sent", "delivered"]
    );
    assert_eq!(view["history"][3]["providerStatus"], "DELIVERED_TO_HANDSET");
    assert_eq!(
        view["history"][3]["at"], "2026-01-01T10:00:05.456Z",
        "Infobip's own time"
    );

    let events = receiver
        .wait_for(Duration::from_secs(10), |e| {
            e.iter().any(|e| e["status"] == "delivered")
        })
        .await;
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["messageId"] == id.as_str())
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["submitted", "delivered"],
        "one event per change of the status"
    );
    assert!(
        events
            .iter()
            .all(|e| e["channel"] == "sms" && e["callbackData"] == "order-42")
    );

    // An unknown id is counted, not an error; an unsigned report is refused.
    assert_eq!(
        sender
            .reports(vec![infobip::delivered("not-a-herald-id")])
            .await,
        200
    );
    assert_eq!(
        sender
            .post_to(
                "/webhooks/infobip",
                vec![infobip::delivered(&id)],
                Some("00")
            )
            .await,
        403
    );
    let unsigned = reqwest::Client::new()
        .post(format!("{}/webhooks/infobip", app.address))
        .body(r#"{"results":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
}

/// Answers sends of the text `body` with `respond` (the first `times` only,
/// ahead of other answers, when given).
async fn mount(
    fake: &FakeInfobip,
    body: &str,
    respond: impl wiremock::Respond + 'static,
    times: Option<u64>,
) {
    let mut mock = infobip::send_endpoint()
        .and(wiremock::matchers::body_partial_json(
            json!({"messages": [{"content": {"text": body}}]}),
        ))
        .respond_with(respond);
    if let Some(n) = times {
        mock = mock.up_to_n_times(n).with_priority(1);
    }
    mock.mount(&fake.server).await;
}

#[tokio::test]
async fn infobip_s_answers_are_classified_like_whatsapp_s() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::start().await;
    let app = gateway(&data, &fake, None, None).await;
    // Rejected in the response: failed at once, Infobip's status as the error.
    mount(
        &fake,
        "rejected",
        infobip::rejected(6, "REJECTED_NETWORK"),
        None,
    )
    .await;
    // 429 then 5xx, then accepted: paced, retried, then submitted.
    mount(&fake, "busy", infobip::throttled(), Some(1)).await;
    mount(
        &fake,
        "busy",
        infobip::api_error(503, "E503", "unavailable"),
        Some(1),
    )
    .await;
    mount(&fake, "busy", infobip::pending_accepted(), None).await;

    let (_, rejected) = send(
        &app,
        &json!({"channel": "sms", "to": TO, "message": "rejected"}),
    )
    .await;
    let view = app
        .wait_for_status(rejected["messageId"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(view["error"]["code"], 6);
    assert_eq!(view["error"]["channel"], "sms");
    let (_, busy) = send(
        &app,
        &json!({"channel": "sms", "to": TO, "message": "busy"}),
    )
    .await;
    let view = app
        .wait_for_status(busy["messageId"].as_str().unwrap(), "submitted")
        .await;
    assert_eq!(view["history"][1]["attempt"], 3);
}

#[tokio::test]
async fn a_whatsapp_message_that_cannot_reach_the_person_goes_by_sms() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::undeliverable())
        .mount(&whatsapp.server)
        .await;
    // Infobip fails once: the retry goes straight to the SMS leg.
    mount(
        &fake,
        "Your table is ready (SMS)",
        infobip::api_error(503, "E503", "busy"),
        Some(1),
    )
    .await;
    let receiver = EventReceiver::start().await;
    let app = gateway(&data, &fake, Some(&whatsapp), Some(&receiver)).await;

    let (code, answer) = send(
        &app,
        &json!({"to": TO, "text": {"body": "Your table is ready"},
            "fallback": {"channel": "sms", "message": "Your table is ready (SMS)", "sender": "Bistro"}}),
    )
    .await;
    assert_eq!(code, 202);
    let id = answer["messageId"].as_str().unwrap().to_owned();
    let body = &requests(&fake, 2).await[1];
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

    let sender = InfobipSender::new(&app.address);
    app.wait_for_status(&id, "submitted").await;
    assert_eq!(sender.reports(vec![infobip::delivered(&id)]).await, 200);
    let view = app.wait_for_status(&id, "delivered").await;
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
    let (_, chose) = send(
        &app,
        &json!({"to": TO, "message": "promo", "fallback": {"channel": "sms", "message": "promo"}}),
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
    let app = gateway(&data, &fake, Some(&whatsapp), None).await;
    let (_, answer) = send(
        &app,
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
    let body = &requests(&fake, 1).await[0];
    assert_eq!(
        body["messages"][0]["content"]["text"],
        "Your visit is tomorrow (SMS)"
    );
    assert_eq!(
        body["messages"][0]["destinations"][0]["messageId"],
        id.as_str()
    );
    assert_eq!(body["messages"][0]["webhooks"]["callbackData"], "visit-9");
    app.wait_for_status(&id, "submitted").await;
    let sender = InfobipSender::new(&app.address);
    assert_eq!(sender.reports(vec![infobip::delivered(&id)]).await, 200);
    let view = app.wait_for_status(&id, "delivered").await;
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.bodies().await.len(),
        1,
        "the repeated report sent nothing more"
    );
}

#[tokio::test]
async fn an_inbound_stop_opts_out_and_the_next_send_is_refused_with_nothing_sent() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::undeliverable())
        .mount(&whatsapp.server)
        .await;
    let receiver = EventReceiver::start().await;
    let app = gateway(&data, &fake, Some(&whatsapp), Some(&receiver)).await;
    let sender = InfobipSender::new(&app.address);

    // " Stop " by SMS: opted out of SMS, and told as an event.
    assert_eq!(
        sender
            .inbound(vec![infobip::inbound("mo-1", "14155550123", " Stop ")])
            .await,
        200
    );
    let (code, refused) = send(
        &app,
        &json!({"channel": "sms", "to": TO, "message": "hello"}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(refused["code"], "recipient-opted-out");
    let opt_out: Value = app
        .client
        .get(format!("{}/api/v1/opt-outs/%2B14155550123", app.address))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(opt_out["channels"], json!(["sms"]));
    assert_eq!(opt_out["source"], "inbound-sms");
    // WhatsApp is another channel; its failover to SMS is failed, not sent.
    let (code, answer) = send(
        &app,
        &json!({"to": TO, "message": "hi", "fallback": {"channel": "sms", "message": "hi"}}),
    )
    .await;
    assert_eq!(code, 202);
    let view = app
        .wait_for_status(answer["messageId"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(view["error"]["code"], "opted-out");
    assert_eq!(view["channel"], "sms");
    assert!(fake.bodies().await.is_empty(), "nothing went to Infobip");

    // A WhatsApp STOP opts out of WhatsApp too; START by SMS takes SMS back.
    let meta = MetaSender::new(&app.address);
    let mut stop = meta::inbound("wamid.IN1", "text", json!({"body": "STOP"}));
    stop["from"] = json!("14155550123");
    assert_eq!(meta.post(&meta::payload(vec![], vec![stop])).await, 200);
    let (code, _) = send(&app, &json!({"to": TO, "message": "hi"})).await;
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
    let (code, _) = send(
        &app,
        &json!({"channel": "sms", "to": TO, "message": "welcome back"}),
    )
    .await;
    assert_eq!(code, 202);
    requests(&fake, 1).await;

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
    let app = gateway(&data, &fake, None, None).await;
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
    let (code, _) = send(&app, &json!({"channel": "sms", "to": TO, "message": "x"})).await;
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
    let (code, _) = send(&app, &json!({"channel": "sms", "to": TO, "message": "x"})).await;
    assert_eq!(code, 202);
}

#[tokio::test]
async fn a_batch_of_sms_applies_opt_outs_and_channels_per_entry() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let app = gateway(&data, &fake, None, None).await;
    let r = app
        .client
        .put(format!("{}/api/v1/opt-outs/%2B14155550123", app.address))
        .header("x-api-key", KEY)
        .json(&json!({"channels": ["sms"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let answer = app
        .post_batch(
            &json!({"defaults": {"channel": "sms", "message": "Spring sale: 20% off €"},
            "messages": [
                {"to": TO},
                {"to": "+14155550124"},
                {"to": "+14155550125", "sender": "!!"},
                {"to": "+14155550126", "channel": "whatsapp"},
                {"to": "+14155550127", "message": "😀 only for you"}]}),
        )
        .await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "rejected");
    assert_eq!(results[0]["code"], "recipient-opted-out");
    assert_eq!(results[1]["status"], "accepted");
    assert_eq!(
        results[1]["sms"],
        json!({"encoding": "GSM-7", "characters": 22, "segments": 1})
    );
    assert_eq!(results[2]["errors"][0]["field"], "sender");
    assert_eq!(results[3]["code"], "channel-not-configured");
    assert_eq!(results[4]["sms"]["encoding"], "UCS-2");
    let bodies = requests(&fake, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.bodies().await.len(), 2);
    let mut to: Vec<&str> = bodies
        .iter()
        .map(|b| b["messages"][0]["destinations"][0]["to"].as_str().unwrap())
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["14155550124", "14155550127"]);
}

#[tokio::test]
async fn infobip_webhooks_refuse_what_is_not_signed_or_not_theirs() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let app = gateway(&data, &fake, None, None).await;
    let sender = InfobipSender::new(&app.address);
    let post = |route: &'static str, body: Vec<u8>, signature: Option<String>| {
        let mut request = app
            .client
            .post(format!("{}{route}", app.address))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = signature {
            request = request.header("x-infobip-signature", sig);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for route in ["/webhooks/infobip", "/webhooks/infobip/inbound"] {
        for (body, expected) in [
            (b"not json".to_vec(), 400),
            (br#"{"results": 7}"#.to_vec(), 400),
            (b"[]".to_vec(), 400),
            (
                br#"{"results": [{"messageId": 1, "status": "x"}, null, 3]}"#.to_vec(),
                200,
            ),
            (br#"{}"#.to_vec(), 200),
        ] {
            let sig = infobip::signature(&body);
            assert_eq!(
                post(route, body.clone(), Some(sig)).await,
                expected,
                "{route} {body:?}"
            );
            assert_eq!(
                post(route, body.clone(), None).await,
                401,
                "{route} unsigned"
            );
            assert_eq!(
                post(route, body, Some("sha256=00".into())).await,
                403,
                "{route} wrong"
            );
        }
        let huge = vec![b' '; 5 << 20];
        let sig = infobip::signature(&huge);
        assert_eq!(
            post(route, huge, Some(sig)).await,
            413,
            "{route} over the limit"
        );
    }
    // Hostile opt-out paths and bodies.
    for (method, number, body, expected) in [
        ("GET", "not-a-number", None, 400),
        ("GET", "%2B1", None, 400),
        ("PUT", "%2B14155550123", Some("nope"), 400),
        ("DELETE", "+0123", None, 400),
    ] {
        let mut request = app
            .client
            .request(
                method.parse().unwrap(),
                format!("{}/api/v1/opt-outs/{number}", app.address),
            )
            .header("x-api-key", KEY);
        if let Some(b) = body {
            request = request.header("content-type", "application/json").body(b);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), expected, "{method} {number}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(sender.reports(vec![]).await, 200);
}

#[tokio::test]
async fn infobip_webhooks_take_basic_auth_when_that_is_configured() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn_from_config(&config_with(&[
        ("HERALD_DATA_DIR", dir.as_str()),
        ("INFOBIP_WEBHOOK_BASIC", "infobip:s3cret-for-basic-auth"),
    ]))
    .await;
    let post = |auth: Option<(&str, &str)>| {
        let mut request = app
            .client
            .post(format!("{}/webhooks/infobip", app.address))
            .header("content-type", "application/json")
            .body(r#"{"results":[]}"#);
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(Some(("infobip", "s3cret-for-basic-auth"))).await, 200);
    assert_eq!(post(Some(("infobip", "wrong"))).await, 403);
    assert_eq!(post(None).await, 401);
    // Without either secret the route does not exist.
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let bare = TestApp::spawn_from_config(&config_with(&[("HERALD_DATA_DIR", dir.as_str())])).await;
    let r = bare
        .client
        .post(format!("{}/webhooks/infobip", bare.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
