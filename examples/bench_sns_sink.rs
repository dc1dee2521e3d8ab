//! Bench-only: a zero-latency SNS endpoint that counts calls and messages.
//! `cargo run --release --example bench_sns_sink -- 127.0.0.1:4599`

// The tests use the counters and scripted faults; this binary only serves.
#[allow(dead_code)]
#[path = "support/sns_sink.rs"]
mod sns_sink;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4599".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("bind the sink's address");
    eprintln!("sns sink listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, sns_sink::router(sns_sink::Sink::new(false)))
        .await
        .expect("serve");
}
