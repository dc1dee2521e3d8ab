//! The SQS poller's `/metrics` (and `/ping`) on `METRICS_PORT`, for a
//! Prometheus scraper: the poller has no HTTP API of its own.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Serves `/metrics` and `/ping` on `host:port` until the process ends; the
/// recorder is installed here if it was not.
pub async fn serve(host: std::net::IpAddr, port: u16) -> std::io::Result<()> {
    crate::metrics::install();
    let app = Router::new().route("/ping", get(|| async { "ok" })).route(
        "/metrics",
        get(|| async {
            match crate::metrics::render() {
                Some(text) => (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
                    .into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    tracing::info!(port, "metrics on /metrics");
    axum::serve(listener, app).await
}
