//! `POST /api/v1/send` accepts every content kind and publishes exactly one envelope.

use serde_json::{Value, json};

use crate::helpers::{TO, TestRouter};

/// A 202 carries a UUID v7 message id, and that id is the published envelope's.
#[tokio::test]
async fn send_returns_202_with_the_published_envelope_id() {
    let app = TestRouter::new();
    let response = app
        .send(json!({"to": TO, "message": "Hello"}).to_string())
        .await;
    assert_eq!(response.status, 202);
    let body = response.json();
    assert_eq!(body["status"], "accepted");
    let id: uuid::Uuid = body["messageId"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7);
    let published = app.publisher.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].id, id);
    assert_eq!(published[0].api_key_id, "ops");
    assert_eq!(published[0].to.as_str(), TO);
    assert_eq!(
        published[0].message,
        json!({"type": "text", "text": {"body": "Hello", "preview_url": false}})
    );
}

/// Each content field of a send (text, template, the five media kinds,
/// interactive, location, contacts, reaction) is accepted and arrives in
/// WhatsApp's shape.
#[tokio::test]
async fn send_accepts_every_content_kind() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"text": {"body": "hi", "previewUrl": true}}), "text"),
        (
            json!({"template": {"name": "order_update", "language": "en_US", "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}}),
            "template",
        ),
        (
            json!({"image": {"link": "https://example.com/a.jpg", "caption": "A"}}),
            "image",
        ),
        (json!({"video": {"id": "1"}}), "video"),
        (json!({"audio": {"id": "2"}}), "audio"),
        (
            json!({"document": {"id": "3", "filename": "a.pdf"}}),
            "document",
        ),
        (json!({"sticker": {"id": "4"}}), "sticker"),
        (
            json!({"interactive": {"type": "button", "body": {"text": "Ok?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}}),
            "interactive",
        ),
        (
            json!({"location": {"latitude": 51.5, "longitude": -0.12}}),
            "location",
        ),
        (
            json!({"contacts": [{"name": {"formatted_name": "Ana"}}]}),
            "contacts",
        ),
        (
            json!({"reaction": {"messageId": "wamid.A", "emoji": "👍"}}),
            "reaction",
        ),
    ];
    let app = TestRouter::new();
    for (content, kind) in &cases {
        let mut body = content.clone();
        body["to"] = json!(TO);
        let response = app.send(body.to_string()).await;
        assert_eq!(
            response.status,
            202,
            "{kind}: {}",
            String::from_utf8_lossy(&response.bytes)
        );
    }
    let published = app.publisher.published();
    let kinds: Vec<&str> = published.iter().map(|e| e.message_type()).collect();
    let expected: Vec<&str> = cases.iter().map(|(_, k)| *k).collect();
    assert_eq!(kinds, expected);
    assert_eq!(published[0].message["text"]["preview_url"], true);
    assert_eq!(
        published[1].message["template"]["language"]["code"],
        "en_US"
    );
    assert_eq!(published[10].message["reaction"]["message_id"], "wamid.A");
}

/// `replyTo`, `callbackData` and `metadata` travel in the envelope untouched.
#[tokio::test]
async fn send_carries_reply_to_callback_data_and_metadata() {
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "hi", "replyTo": "wamid.Q", "callbackData": "order-42",
        "metadata": {"tenant": "acme", "nested": {"a": [1, 2, 3]}}});
    assert_eq!(app.send(body.to_string()).await.status, 202);
    let env = &app.publisher.published()[0];
    assert_eq!(env.reply_to.as_deref(), Some("wamid.Q"));
    assert_eq!(env.callback_data.as_deref(), Some("order-42"));
    assert_eq!(
        Value::Object(env.metadata.clone()),
        json!({"tenant": "acme", "nested": {"a": [1, 2, 3]}})
    );
}

/// Every invalid field is listed in one 400, and nothing is published.
#[tokio::test]
async fn send_lists_every_invalid_field_at_once() {
    let app = TestRouter::new();
    let body = json!({"to": "+1 415 555 0123", "mesage": "typo", "text": {"body": ""}, "callbackData": "x".repeat(600)});
    let response = app.send(body.to_string()).await;
    let problem = response.assert_problem(400);
    assert_eq!(problem["code"], "invalid-fields");
    let mut fields = response.error_fields();
    fields.sort();
    assert_eq!(fields, ["callbackData", "mesage", "text.body", "to"]);
    assert!(app.publisher.published().is_empty());
}

/// A publish failure is a 503 with Retry-After, and the client is told nothing was published.
#[tokio::test]
async fn send_returns_503_with_retry_after_when_publishing_fails() {
    use herald::publisher::PublishErrorKind;
    let app = TestRouter::new();
    for (kind, code, wait) in [
        (PublishErrorKind::Throttled, "queue-throttled", "1"),
        (PublishErrorKind::Transient, "queue-unavailable", "1"),
        (PublishErrorKind::Misconfigured, "queue-unavailable", "30"),
    ] {
        app.publisher.fail_with(Some(kind));
        let response = app
            .send(json!({"to": TO, "message": "hi"}).to_string())
            .await;
        let problem = response.assert_problem(503);
        assert_eq!(problem["code"], code);
        assert_eq!(response.headers["retry-after"], wait);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("nothing was published")
        );
    }
    assert!(app.publisher.published().is_empty());
}

/// Over the per-key rate, a key gets 429 with Retry-After; another key is unaffected.
#[tokio::test]
async fn send_returns_429_when_a_key_exceeds_its_rate() {
    use crate::helpers::{OTHER_KEY, config_with};
    let app = TestRouter::with_config(&config_with(&[("RATE_LIMIT_PER_KEY", "2")]));
    let body = json!({"to": TO, "message": "hi"}).to_string();
    assert_eq!(app.send(body.clone()).await.status, 202);
    assert_eq!(app.send(body.clone()).await.status, 202);
    let limited = app.send(body.clone()).await;
    limited.assert_problem(429);
    assert!(limited.headers.contains_key("retry-after"));
    let other = axum::http::Request::post("/api/v1/send")
        .header("x-api-key", OTHER_KEY)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    assert_eq!(app.call(other).await.status, 202);
    assert_eq!(app.publisher.published().len(), 3);
}

/// A publish slower than REQUEST_TIMEOUT_MS ends as a 503 problem document, and the
/// abandoned publish records nothing.
#[tokio::test]
async fn a_request_over_the_timeout_is_a_503_problem() {
    use crate::helpers::config_with;
    let app = TestRouter::with_config(&config_with(&[("REQUEST_TIMEOUT_MS", "200")]));
    app.publisher.delay_with(std::time::Duration::from_secs(2));
    let response = app
        .send(json!({"to": TO, "message": "slow"}).to_string())
        .await;
    assert_eq!(response.assert_problem(503)["code"], "timeout");
    assert!(response.headers.contains_key("retry-after"));
    // Not a wait for an outcome: the abandoned 2 s publish would have ended by now.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(app.publisher.published().is_empty());
}
