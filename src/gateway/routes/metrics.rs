//! `GET /metrics`: Prometheus text, no key (`METRICS=off` removes the route).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::gateway::AppState;
use crate::gateway::error::ApiError;

/// Renders every series; the embedded queue's gauges are read first (from
/// the readiness check, which caches its read of the database).
#[utoipa::path(get, operation_id = "scrapeMetrics", path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 404, description = "METRICS=off, or no recorder", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let check = state.publisher.check_health().await;
    let number = |key: &str| check.detail.get(key).and_then(serde_json::Value::as_f64);
    if let Some(depth) = number("depth") {
        crate::metrics::queue(
            depth,
            number("oldestAgeSeconds").unwrap_or(0.0),
            number("deadLetters").unwrap_or(0.0),
        );
        crate::metrics::scheduled_waiting(number("scheduledWaiting").unwrap_or(0.0));
    }
    let text = crate::metrics::render().ok_or(ApiError::NotFound)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
