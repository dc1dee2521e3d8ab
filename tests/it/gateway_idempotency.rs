//! `Idempotency-Key`: same key and body → same id, one publish; different body → 422.

use serde_json::json;

use crate::helpers::{TO, TestRouter};

/// A retry with the same key and body returns the first id and publishes nothing new.
#[tokio::test]
async fn a_retry_with_the_same_key_and_body_returns_the_same_id() {
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "once"}).to_string();
    let first = app.send_idempotent("order-42", &body).await;
    let second = app.send_idempotent("order-42", &body).await;
    assert_eq!(first.status, 202);
    assert_eq!(second.status, 202);
    assert_eq!(first.json()["messageId"], second.json()["messageId"]);
    assert_eq!(app.publisher.published().len(), 1);
    assert_eq!(
        app.publisher.published()[0].id.to_string(),
        first.json()["messageId"]
    );
}

/// The same key with another body is a 422 and publishes nothing.
#[tokio::test]
async fn the_same_key_with_a_different_body_is_422() {
    let app = TestRouter::new();
    app.send_idempotent("k", &json!({"to": TO, "message": "one"}).to_string())
        .await;
    let response = app
        .send_idempotent("k", &json!({"to": TO, "message": "two"}).to_string())
        .await;
    assert_eq!(
        response.assert_problem(422)["code"],
        "idempotency-key-reused"
    );
    assert_eq!(app.publisher.published().len(), 1);
}

/// A failed publish does not burn the key: the retry publishes.
#[tokio::test]
async fn a_failed_publish_leaves_the_key_free_for_the_retry() {
    use herald::publisher::PublishErrorKind;
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "retry me"}).to_string();
    app.publisher.fail_with(Some(PublishErrorKind::Transient));
    app.send_idempotent("k", &body).await.assert_problem(503);
    app.publisher.fail_with(None);
    assert_eq!(app.send_idempotent("k", &body).await.status, 202);
    assert_eq!(app.publisher.published().len(), 1);
}

/// An invalid body is rejected without claiming the key.
#[tokio::test]
async fn an_invalid_body_does_not_claim_the_key() {
    let app = TestRouter::new();
    app.send_idempotent("k", &json!({"to": "bad", "message": "x"}).to_string())
        .await
        .assert_problem(400);
    assert_eq!(
        app.send_idempotent("k", &json!({"to": TO, "message": "x"}).to_string())
            .await
            .status,
        202
    );
}

/// Keys that are too long or not visible ASCII are a 400 naming the header.
#[tokio::test]
async fn malformed_keys_are_rejected() {
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "x"}).to_string();
    let problem = app
        .send_idempotent(&"k".repeat(256), &body)
        .await
        .assert_problem(400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert!(app.publisher.published().is_empty());
}

/// Concurrent duplicates publish once and all get the same id.
#[tokio::test]
async fn concurrent_duplicates_publish_once() {
    let app = std::sync::Arc::new(TestRouter::new());
    let body = json!({"to": TO, "message": "race"}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            app.send_idempotent("race", &body).await.json()["messageId"].clone()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.publisher.published().len(), 1);
}
