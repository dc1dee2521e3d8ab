//! API-key authentication happens before anything else about the request.

use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use crate::helpers::{KEY, OTHER_KEY, TO, TestRouter};

fn post(headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut builder = Request::post("/api/v1/send").header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

/// No key: 401 problem document, nothing published.
#[tokio::test]
async fn send_returns_401_when_the_api_key_is_missing() {
    let app = TestRouter::new();
    let response = app
        .call(post(&[], &json!({"to": TO, "message": "hi"}).to_string()))
        .await;
    response.assert_problem(401);
    assert!(app.publisher.published().is_empty());
}

/// Wrong keys, near misses and wrong schemes are all 401.
#[tokio::test]
async fn send_returns_401_when_the_api_key_is_wrong() {
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "hi"}).to_string();
    let near_miss = format!("{KEY}x");
    let basic = format!("Basic {KEY}");
    for headers in [
        vec![("x-api-key", "wrong")],
        vec![("x-api-key", near_miss.as_str())],
        vec![("x-api-key", "")],
        vec![("authorization", basic.as_str())],
        vec![("authorization", "Bearer ")],
    ] {
        app.call(post(&headers, &body)).await.assert_problem(401);
    }
    assert!(app.publisher.published().is_empty());
}

/// The key is checked before the body: a bad body without a key is a 401, not a 400 or 415.
#[tokio::test]
async fn send_checks_the_key_before_reading_the_body() {
    let app = TestRouter::new();
    app.call(post(&[], "{not json")).await.assert_problem(401);
    let no_content_type = Request::post("/api/v1/send").body(Body::from("x")).unwrap();
    app.call(no_content_type).await.assert_problem(401);
}

/// `Authorization: Bearer` works like `x-api-key`, and the key's id reaches the envelope.
#[tokio::test]
async fn send_accepts_a_bearer_token_and_records_the_key_id() {
    let app = TestRouter::new();
    let bearer = format!("Bearer {OTHER_KEY}");
    let response = app
        .call(post(
            &[("authorization", &bearer)],
            &json!({"to": TO, "message": "hi"}).to_string(),
        ))
        .await;
    assert_eq!(response.status, 202);
    assert_eq!(app.publisher.published()[0].api_key_id, "billing");
}

/// The operator endpoints need no key.
#[tokio::test]
async fn ping_and_health_need_no_key() {
    let app = TestRouter::new();
    assert_eq!(app.get("/ping").await.status, 200);
    assert_eq!(app.get("/health").await.status, 200);
}
