//! SMS through Infobip on the embedded default, end to end: validation at
//! the edge, the request the fake Infobip receives, its answers' classes,
//! signed delivery reports (batched, repeated, out of order), and the
//! webhooks' refusals. Failover is in failover.rs, opt-outs in opt_outs.rs,
//! batches of SMS in sms_batch.rs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::event_receiver::EventReceiver;
use crate::helpers::infobip::{self, FakeInfobip, InfobipSender};
use crate::helpers::{KEY, TO, TestApp, TestRouter, config_with, history_statuses};

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
    let app = infobip::gateway(&data, &fake, None, Some(&receiver)).await;

    let (code, answer) = app
        .send(
            &json!({"channel": "sms", "to": "+41793026727", "message": "Your code is 1234 €",
            "callbackData": "order-42"}),
        )
        .await;
    assert_eq!(code, 202);
    let id = answer["messageId"].as_str().unwrap().to_owned();
    let body = &fake.wait_for_requests(1).await[0];
    assert_eq!(
        body,
        &json!({"messages": [{"sender": infobip::SENDER,
            "destinations": [{"to": "41793026727", "messageId": id}],
            "content": {"text": "Your code is 1234 €"},
            "webhooks": {"delivery": {"url": format!("{}/webhooks/infobip", infobip::PUBLIC)},
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

#[tokio::test]
async fn infobip_s_answers_are_classified_like_whatsapp_s() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::start().await;
    let app = infobip::gateway(&data, &fake, None, None).await;
    // Rejected in the response: failed at once, Infobip's status as the error.
    fake.answer_text("rejected", infobip::rejected(6, "REJECTED_NETWORK"), None)
        .await;
    // 429 then 5xx, then accepted: paced, retried, then submitted.
    fake.answer_text("busy", infobip::throttled(), Some(1))
        .await;
    fake.answer_text(
        "busy",
        infobip::api_error(503, "E503", "unavailable"),
        Some(1),
    )
    .await;
    fake.answer_text("busy", infobip::pending_accepted(), None)
        .await;

    let (_, rejected) = app
        .send(&json!({"channel": "sms", "to": TO, "message": "rejected"}))
        .await;
    let view = app
        .wait_for_status(rejected["messageId"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(view["error"]["code"], 6);
    assert_eq!(view["error"]["channel"], "sms");
    let (_, busy) = app
        .send(&json!({"channel": "sms", "to": TO, "message": "busy"}))
        .await;
    let view = app
        .wait_for_status(busy["messageId"].as_str().unwrap(), "submitted")
        .await;
    assert_eq!(view["history"][1]["attempt"], 3);
}

#[tokio::test]
async fn infobip_webhooks_refuse_what_is_not_signed_or_not_theirs() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let app = infobip::gateway(&data, &fake, None, None).await;
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
    let app = TestApp::spawn_embedded(
        data.path(),
        &[("INFOBIP_WEBHOOK_BASIC", "infobip:s3cret-for-basic-auth")],
    )
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
    let bare = TestApp::spawn_embedded(data.path(), &[]).await;
    let r = bare
        .client
        .post(format!("{}/webhooks/infobip", bare.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
