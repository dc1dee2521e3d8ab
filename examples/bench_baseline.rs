//! Bench-only: the bare axum baseline. Parses the same JSON body as the gateway
//! and answers a fixed 202, with no auth, validation, publishing or logging.
//! `cargo run --release --example bench_baseline -- 127.0.0.1:4598`

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;

async fn send(Json(_body): Json<serde_json::Value>) -> (StatusCode, &'static str) {
    (
        StatusCode::ACCEPTED,
        r#"{"messageId":"0193a5b2-7c1e-7d4a-9f1e-2b3c4d5e6f70","status":"accepted"}"#,
    )
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4598".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("bind the baseline's address");
    eprintln!("baseline listening on {}", listener.local_addr().unwrap());
    axum::serve(
        listener,
        axum::Router::new().route("/api/v1/send", post(send)),
    )
    .await
    .expect("serve");
}
