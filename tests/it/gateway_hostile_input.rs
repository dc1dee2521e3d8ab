//! What a hostile or careless client might send: each gets a precise 4xx, never
//! a 500 or a panic, and nothing is published.

use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use crate::helpers::{KEY, TO, TestRouter, send_request};

/// Bodies that are not JSON, or not a JSON object, are 400 with the reason.
#[tokio::test]
async fn malformed_bodies_are_400() {
    let app = TestRouter::new();
    let cases: [(&[u8], &str); 9] = [
        (b"", "malformed-json"),
        (b"{\"to\":", "malformed-json"),
        (b"{'to': '+14155550123'}", "malformed-json"),
        (
            b"{\"to\":\"+14155550123\",\"message\":\"hi\"} trailing",
            "malformed-json",
        ),
        (b"null", "invalid-fields"),
        (b"[]", "invalid-fields"),
        (b"\"hello\"", "invalid-fields"),
        (b"42", "invalid-fields"),
        (
            b"{\"to\":\"+14155550123\",\"message\":\"\\ud800\"}",
            "malformed-json",
        ),
    ];
    for (body, code) in cases {
        let response = app.send(body.to_vec()).await;
        let problem = response.assert_problem(400);
        assert_eq!(
            problem["code"],
            code,
            "body {:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(app.publisher.published().is_empty());
}

/// Invalid UTF-8 inside a string is refused, not mangled.
#[tokio::test]
async fn invalid_utf8_is_400() {
    let app = TestRouter::new();
    let mut body = br#"{"to":"+14155550123","message":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    body.extend_from_slice(br#""}"#);
    app.send(body).await.assert_problem(400);
    assert!(app.publisher.published().is_empty());
}

/// Wrong types and nulls name each field.
#[tokio::test]
async fn wrong_types_and_nulls_name_the_fields() {
    let app = TestRouter::new();
    let cases = [
        (json!({"to": 14155550123u64, "message": "hi"}), vec!["to"]),
        (
            json!({"to": TO, "message": {"body": "hi"}}),
            vec!["message"],
        ),
        (json!({"to": TO, "text": "hi"}), vec!["text"]),
        (json!({"to": null, "message": null}), vec!["message", "to"]),
        (json!({"to": [TO], "message": true}), vec!["message", "to"]),
        (
            json!({"to": TO, "location": {"latitude": "north", "longitude": null}}),
            vec!["location.latitude", "location.longitude"],
        ),
        (
            json!({"to": TO, "message": "hi", "metadata": []}),
            vec!["metadata"],
        ),
    ];
    for (body, expected) in cases {
        let response = app.send(body.to_string()).await;
        response.assert_problem(400);
        let mut fields = response.error_fields();
        fields.sort();
        assert_eq!(fields, expected, "{body}");
    }
    assert!(app.publisher.published().is_empty());
}

/// Digits from other scripts are digits to Unicode but not to E.164.
#[tokio::test]
async fn non_ascii_digits_in_to_are_400() {
    let app = TestRouter::new();
    for to in [
        "+١٤١٥٥٥٥٠١٢٣",
        "+１４１５５５５０１２３",
        "+۱۴۱۵۵۵۵۰۱۲۳",
        "+14155550123\u{200b}",
    ] {
        let response = app
            .send(json!({"to": to, "message": "hi"}).to_string())
            .await;
        response.assert_problem(400);
        assert_eq!(response.error_fields(), ["to"], "{to}");
    }
    assert!(app.publisher.published().is_empty());
}

/// A string longer than WhatsApp allows but within the body limit is a field error.
#[tokio::test]
async fn huge_strings_are_400_naming_the_field() {
    let app = TestRouter::new();
    let response = app
        .send(json!({"to": TO, "message": "x".repeat(60_000)}).to_string())
        .await;
    response.assert_problem(400);
    assert_eq!(response.error_fields(), ["message"]);
}

/// Deep nesting is refused by the parser's depth limit, not by a stack overflow.
#[tokio::test]
async fn deep_nesting_is_400() {
    let app = TestRouter::new();
    let depth = 20_000;
    let body = format!(
        r#"{{"to":"{TO}","message":"hi","metadata":{{"a":{}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let problem = app.send(body).await.assert_problem(400);
    assert_eq!(problem["code"], "malformed-json");
}

/// Numbers JSON can express but f64 cannot are refused.
#[tokio::test]
async fn out_of_range_numbers_are_400() {
    let app = TestRouter::new();
    let body = format!(r#"{{"to":"{TO}","location":{{"latitude":1e400,"longitude":0}}}}"#);
    app.send(body).await.assert_problem(400);
}

/// Anything but JSON is 415.
#[tokio::test]
async fn wrong_content_types_are_415() {
    let app = TestRouter::new();
    let body = json!({"to": TO, "message": "hi"}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut builder = Request::post("/api/v1/send").header("x-api-key", KEY);
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let response = app
            .call(builder.body(Body::from(body.clone())).unwrap())
            .await;
        response.assert_problem(415);
    }
    assert!(app.publisher.published().is_empty());
}

/// Bodies over the limit are 413, whether the length is declared or streamed.
#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestRouter::new();
    let big = json!({"to": TO, "message": "x".repeat(70_000)}).to_string();
    app.send(big.clone()).await.assert_problem(413);

    // Streamed without a Content-Length: the limit still applies while reading.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let stream = Body::from_stream(futures_lite_stream(chunks));
    app.call(send_request(stream)).await.assert_problem(413);

    // A lying Content-Length is refused before reading.
    let mut lying = send_request(Body::from("{}"));
    lying
        .headers_mut()
        .insert("content-length", "10000000".parse().unwrap());
    app.call(lying).await.assert_problem(413);
    assert!(app.publisher.published().is_empty());
}

/// A body just under the limit is read and validated normally.
#[tokio::test]
async fn a_body_at_the_limit_is_accepted_for_validation() {
    let app = TestRouter::new();
    let metadata = json!({"pad": "p".repeat(3000)});
    let response = app
        .send(json!({"to": TO, "message": "hi", "metadata": metadata}).to_string())
        .await;
    assert_eq!(response.status, 202);
}

fn futures_lite_stream<T: Send + 'static>(
    items: Vec<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    tokio_stream::iter(items)
}
