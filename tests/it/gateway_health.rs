//! Liveness, readiness, and the answers for unknown routes.

use herald::publisher::PublishErrorKind;
use serde_json::json;

use crate::helpers::TestRouter;

/// `/ping` answers `{"status":"ok"}` whatever the publisher's state.
#[tokio::test]
async fn ping_answers_ok_even_when_the_publisher_fails() {
    let app = TestRouter::new();
    app.publisher
        .fail_with(Some(PublishErrorKind::Misconfigured));
    let response = app.get("/ping").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"status": "ok"}));
}

/// `/health` is 200 with its checks, and 503 naming the failing check.
#[tokio::test]
async fn health_names_the_failing_check() {
    let app = TestRouter::new();
    let ok = app.get("/health").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["status"], "ok");
    assert_eq!(ok.json()["checks"]["memory"]["status"], "ok");

    app.publisher.fail_with(Some(PublishErrorKind::Transient));
    let failing = app.get("/health").await;
    assert_eq!(failing.status, 503);
    assert_eq!(failing.json()["failing"], json!(["memory"]));
}

/// Every response carries a request id; a client's own id is propagated.
#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = TestRouter::new();
    let generated = app.get("/ping").await;
    assert!(!generated.headers["x-request-id"].is_empty());
    let request = axum::http::Request::get("/ping")
        .header("x-request-id", "abc-123")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.call(request).await.headers["x-request-id"], "abc-123");
}

/// Unknown paths and methods get problem documents, not empty bodies.
#[tokio::test]
async fn unknown_routes_and_methods_are_problem_documents() {
    let app = TestRouter::new();
    app.get("/api/v1/nothing").await.assert_problem(404);
    app.get("/api/v1/send").await.assert_problem(405);
}

/// Without the embedded queue, dead letters live in the SQS DLQ: the route is a 404.
#[tokio::test]
async fn dead_letters_are_404_when_the_publisher_does_not_keep_them() {
    let app = TestRouter::new();
    let request = axum::http::Request::get("/api/v1/dead-letters")
        .header("x-api-key", crate::helpers::KEY)
        .body(axum::body::Body::empty())
        .unwrap();
    app.call(request).await.assert_problem(404);
}
