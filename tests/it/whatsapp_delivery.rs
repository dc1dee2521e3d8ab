//! The delivery pipeline against a fake Graph API: the exact request, and one
//! test per failure class with Meta's own error payloads.

use std::time::Duration;

use herald::delivery::Decision as Outcome;
use herald::delivery::FailureClass;
use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::body_partial_json;

use crate::helpers::whatsapp::{
    FakeWhatsApp, assert_matches_meta_schema, expired_token, graph_error, send_endpoint, success,
    undeliverable,
};
use crate::helpers::{TO, envelope, text_envelope};

/// The request has the documented shape: product, recipient type, digits-only
/// `to`, the message, `context` and `biz_opaque_callback_data`, with the bearer token.
#[tokio::test]
async fn a_delivery_posts_the_documented_request_and_returns_the_wamid() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .and(body_partial_json(
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "14155550123", "type": "text", "text": {"body": "Hello", "preview_url": false},
            "context": {"message_id": "wamid.PREV"}, "biz_opaque_callback_data": "order-42"}),
        ))
        .respond_with(success("14155550123", "wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let env = envelope(
        "ops",
        json!({"to": TO, "message": "Hello", "replyTo": "wamid.PREV", "callbackData": "order-42"}),
    );

    let outcome = fake.pipeline(Duration::from_secs(5)).deliver(&env, 1).await;

    assert_eq!(
        outcome,
        Outcome::Delivered {
            provider_id: "wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI".into()
        }
    );
}

/// Every kind of message the gateway accepts becomes a request that Meta's
/// `Message` schema (from the official OpenAPI file) accepts.
#[tokio::test]
async fn every_request_matches_metas_message_schema() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.X"))
        .mount(&fake.server)
        .await;
    let pipeline = fake.pipeline(Duration::from_secs(5));
    let bodies = [
        json!({"to": TO, "message": "hi", "replyTo": "wamid.A", "callbackData": "cb"}),
        json!({"to": TO, "text": {"body": "https://example.com", "previewUrl": true}}),
        json!({"to": TO, "template": {"name": "order_update", "language": "en_US", "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/i.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"},
                {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100_990}},
                {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977"}}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "YES"}]}]}}),
        json!({"to": TO, "image": {"link": "https://example.com/a.jpg", "caption": "A"}}),
        json!({"to": TO, "video": {"id": "1234"}}),
        json!({"to": TO, "audio": {"id": "1234"}}),
        json!({"to": TO, "document": {"id": "1234", "caption": "Invoice", "filename": "invoice.pdf"}}),
        json!({"to": TO, "sticker": {"id": "1234"}}),
        json!({"to": TO, "location": {"latitude": 37.758056, "longitude": -122.425332, "name": "META HQ", "address": "1 Hacker Way"}}),
        json!({"to": TO, "contacts": [{"name": {"formatted_name": "Ana Lima", "first_name": "Ana"},
            "phones": [{"phone": "+5511987654321", "type": "WORK"}], "addresses": [{"city": "Menlo Park", "type": "WORK"}], "emails": [{"email": "ana@example.com", "type": "WORK"}]}]}),
        json!({"to": TO, "reaction": {"messageId": "wamid.HBgL", "emoji": "😀"}}),
        json!({"to": TO, "interactive": {"type": "button", "header": {"type": "text", "text": "Hdr"}, "body": {"text": "Pick"},
            "footer": {"text": "f"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "Yes"}}]}}}),
        json!({"to": TO, "interactive": {"type": "list", "body": {"text": "Menu"}, "action": {"button": "Choose",
            "sections": [{"title": "Mains", "rows": [{"id": "r1", "title": "Soup", "description": "Hot"}]}]}}}),
        json!({"to": TO, "interactive": {"type": "cta_url", "body": {"text": "Tickets"},
            "action": {"name": "cta_url", "parameters": {"display_text": "See Dates", "url": "https://example.com/x"}}}}),
    ];
    for body in &bodies {
        assert!(matches!(
            pipeline.deliver(&envelope("ops", body.clone()), 1).await,
            Outcome::Delivered { .. }
        ));
    }
    let sent = fake.bodies().await;
    assert_eq!(sent.len(), bodies.len());
    for body in &sent {
        assert_matches_meta_schema(body);
    }
}

/// Each class of Graph error leads to its documented action.
#[tokio::test]
async fn each_graph_error_class_leads_to_its_action() {
    let cases: Vec<(ResponseTemplate, Option<FailureClass>, i64)> = vec![
        (undeliverable(), None, 131_026),
        (
            graph_error(
                400,
                131_047,
                "Re-engagement message",
                "Message failed to send because more than 24 hours have passed",
            ),
            None,
            131_047,
        ),
        (
            graph_error(
                404,
                132_001,
                "Template name does not exist in the translation",
                "template name (order_update) does not exist in en_US",
            ),
            None,
            132_001,
        ),
        (
            graph_error(
                400,
                132_000,
                "Number of parameters does not match the expected number of params",
                "body: number of localizable_params (2) does not match the expected number of params (1)",
            ),
            None,
            132_000,
        ),
        (
            graph_error(
                400,
                130_429,
                "Rate limit hit",
                "Cloud API message throughput has been reached.",
            ),
            Some(FailureClass::Throttled),
            130_429,
        ),
        (
            graph_error(
                400,
                131_056,
                "(Business Account, Consumer Account) pair rate limit hit",
                "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
            ),
            Some(FailureClass::Throttled),
            131_056,
        ),
        (
            graph_error(
                500,
                131_000,
                "Something went wrong",
                "Message failed to send due to an unknown error.",
            ),
            Some(FailureClass::Retryable),
            131_000,
        ),
        (
            graph_error(
                503,
                131_016,
                "Service unavailable",
                "A service is temporarily unavailable.",
            ),
            Some(FailureClass::Retryable),
            131_016,
        ),
        (expired_token(), Some(FailureClass::Configuration), 190),
        (
            graph_error(403, 200, "Permission error", "Permissions error"),
            Some(FailureClass::Configuration),
            200,
        ),
    ];
    for (response, class, code) in cases {
        let fake = FakeWhatsApp::start().await;
        send_endpoint()
            .respond_with(response)
            .expect(1)
            .mount(&fake.server)
            .await;
        let outcome = fake
            .pipeline(Duration::from_secs(5))
            .deliver(&text_envelope("hi"), 1)
            .await;
        match (class, outcome) {
            (None, Outcome::GiveUp { code: Some(c), .. }) => assert_eq!(c, code),
            (
                Some(expected),
                Outcome::Retry {
                    class,
                    code: Some(c),
                    ..
                },
            ) => {
                assert_eq!(class, expected, "code {code}");
                assert_eq!(c, code);
            }
            (expected, other) => panic!("code {code}: expected {expected:?}, got {other:?}"),
        }
    }
}

/// A timeout after the request was sent is "sent, answer unknown": Meta may
/// have accepted the message, so it is retried only after the longer delay,
/// under its own action name.
#[tokio::test]
async fn a_timeout_after_sending_is_unconfirmed() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.late").set_delay(Duration::from_secs(3)))
        .mount(&fake.server)
        .await;
    let outcome = fake
        .pipeline(Duration::from_millis(300))
        .deliver(&text_envelope("hi"), 1)
        .await;
    assert!(
        matches!(
            outcome,
            Outcome::Retry {
                class: FailureClass::Unconfirmed,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(outcome.action(), "unconfirmed");
}

/// A 200 Meta answers with a body Herald cannot read (an HTML page from a
/// proxy, or JSON without `messages[0].id`) is not a permanent failure: the
/// message may be on its way, so it is unconfirmed, not dead-lettered.
#[tokio::test]
async fn an_unreadable_success_is_unconfirmed_not_permanent() {
    for body in [
        ResponseTemplate::new(200).set_body_raw("<html>ok</html>", "text/html"),
        ResponseTemplate::new(200)
            .set_body_json(json!({"messaging_product": "whatsapp", "messages": []})),
    ] {
        let fake = FakeWhatsApp::start().await;
        send_endpoint().respond_with(body).mount(&fake.server).await;
        let outcome = fake
            .pipeline(Duration::from_secs(5))
            .deliver(&text_envelope("hi"), 1)
            .await;
        assert!(
            matches!(
                outcome,
                Outcome::Retry {
                    class: FailureClass::Unconfirmed,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
}

/// A slow but timely answer is a success.
#[tokio::test]
async fn a_slow_answer_within_the_timeout_succeeds() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.slow").set_delay(Duration::from_millis(200)))
        .mount(&fake.server)
        .await;
    let outcome = fake
        .pipeline(Duration::from_secs(5))
        .deliver(&text_envelope("hi"), 1)
        .await;
    assert_eq!(
        outcome,
        Outcome::Delivered {
            provider_id: "wamid.slow".into()
        }
    );
}

/// `Retry-After` from the API is a floor for the next attempt.
#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(
            graph_error(429, 130_429, "Rate limit hit", "throughput")
                .insert_header("retry-after", "7"),
        )
        .mount(&fake.server)
        .await;
    let outcome = fake
        .pipeline(Duration::from_secs(5))
        .deliver(&text_envelope("hi"), 1)
        .await;
    let Outcome::Retry { after, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(after >= Duration::from_secs(7), "{after:?}");
}

/// A connection refused is retryable; an unparseable 5xx keeps its status and body.
#[tokio::test]
async fn transport_failures_and_garbage_are_classified() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .mount(&fake.server)
        .await;
    let outcome = fake
        .pipeline(Duration::from_secs(5))
        .deliver(&text_envelope("hi"), 1)
        .await;
    let Outcome::Retry {
        class: FailureClass::Retryable,
        reason,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(
        reason.contains("502") && reason.contains("Bad Gateway"),
        "{reason}"
    );

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = fake.config(Duration::from_secs(2));
    config.base_url = format!("http://127.0.0.1:{closed_port}");
    let pipeline = crate::helpers::whatsapp::pipeline_for(&config, 4);
    let outcome = pipeline.deliver(&text_envelope("hi"), 1).await;
    assert!(
        matches!(
            outcome,
            Outcome::Retry {
                class: FailureClass::Retryable,
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// A wrong token never matches the fake's bearer check: the request carries exactly ours.
#[tokio::test]
async fn the_bearer_token_is_sent() {
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.ok"))
        .expect(1)
        .mount(&fake.server)
        .await;
    fake.pipeline(Duration::from_secs(5))
        .deliver(&text_envelope("hi"), 1)
        .await;
}
