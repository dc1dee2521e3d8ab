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

/// A failed publish does not burn the key: the retry publishes, under the
/// same message id the first attempt used.
#[tokio::test]
async fn a_failed_publish_leaves_the_key_free_for_the_retry() {
    use herald::publisher::PublishErrorKind;
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "retry me"}).to_string();
    app.publisher.fail_with(Some(PublishErrorKind::Transient));
    let failed = app.send_idempotent("k", &body).await;
    assert!(
        failed.assert_problem(503)["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was published")
    );
    app.publisher.fail_with(None);
    assert_eq!(app.send_idempotent("k", &body).await.status, 202);
    assert_eq!(app.publisher.published().len(), 1);
}

/// An unknown outcome (SNS stored the message but the answer was lost) is
/// never called "nothing was published", and the retry with the same key
/// carries the same message id, so a FIFO topic or the embedded queue drops
/// the copy and any consumer can tell it is one.
#[tokio::test]
async fn a_retry_after_an_unknown_outcome_carries_the_same_id() {
    use herald::publisher::PublishErrorKind;
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "lost answer"}).to_string();
    app.publisher
        .fail_with(Some(PublishErrorKind::OutcomeUnknown));
    let unknown = app.send_idempotent("k", &body).await;
    let problem = unknown.assert_problem(503);
    assert_eq!(problem["code"], "outcome-unknown");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("may have been published"), "{detail}");
    assert!(detail.contains("same Idempotency-Key"), "{detail}");

    app.publisher.fail_with(None);
    let retry = app.send_idempotent("k", &body).await;
    assert_eq!(retry.status, 202);
    let published = app.publisher.published();
    assert_eq!(published.len(), 2, "the lost first copy, and the retry");
    assert_eq!(published[0].id, published[1].id);
    assert_eq!(retry.json()["messageId"], published[0].id.to_string());
}

/// A request that times out while publishing says the message may have been
/// published; its retry uses the same id.
#[tokio::test]
async fn a_timed_out_publish_is_an_unknown_outcome_and_keeps_its_id() {
    let app = TestRouter::with_config(&crate::helpers::config_with(&[(
        "REQUEST_TIMEOUT_MS",
        "200",
    )]));
    let body = json!({"to": TO, "message": "slow queue"}).to_string();
    app.publisher.delay_with(std::time::Duration::from_secs(2));
    let timed_out = app.send_idempotent("slow", &body).await;
    let problem = timed_out.assert_problem(503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("may have been published")
    );
    app.publisher.delay_with(std::time::Duration::ZERO);
    let first = app.send_idempotent("slow", &body).await;
    let second = app.send_idempotent("slow", &body).await;
    assert_eq!(first.status, 202);
    assert_eq!(first.json()["messageId"], second.json()["messageId"]);
    assert_eq!(app.publisher.published().len(), 1);
}

/// One tenant's keyed traffic cannot evict another tenant's keys.
#[tokio::test]
async fn another_tenants_keys_do_not_evict_mine() {
    let app = TestRouter::with_config(&crate::helpers::config_with(&[(
        "IDEMPOTENCY_MAX_KEYS",
        "5",
    )]));
    let body = json!({"to": TO, "message": "mine"}).to_string();
    let mine = app.send_idempotent("mine", &body).await;
    for i in 0..20 {
        let request = axum::http::Request::post("/api/v1/send")
            .header("x-api-key", crate::helpers::OTHER_KEY)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("theirs-{i}"))
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        assert_eq!(app.call(request).await.status, 202);
    }
    let again = app.send_idempotent("mine", &body).await;
    assert_eq!(mine.json()["messageId"], again.json()["messageId"]);
    assert_eq!(app.publisher.published().len(), 21);
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
