//! `GET /ping` (liveness) and `GET /health` (readiness).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::gateway::AppState;

/// Liveness: the process answers. No dependencies are checked.
#[utoipa::path(get, operation_id = "ping", path = "/ping", tag = "operations",
    responses((status = 200, description = "Alive", body = crate::gateway::openapi::Health)))]
pub async fn ping() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the publisher can publish. `503` names the failing check.
#[utoipa::path(get, operation_id = "health", path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = crate::gateway::openapi::Health),
        (status = 503, description = "Not ready; `failing` names the check", body = crate::gateway::openapi::Health),
    ))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let check = state.publisher.check_health().await;
    let mut checks = Map::new();
    checks.insert(
        check.name.to_owned(),
        json!({ "status": if check.healthy { "ok" } else { "failing" }, "detail": check.detail }),
    );
    // Delivery (embedded default): an open circuit is shown, but does not make
    // the gateway unready: it still accepts and keeps messages.
    if let Some(pipeline) = &state.delivery {
        let status = if pipeline.any_circuit_open() {
            "degraded"
        } else {
            "ok"
        };
        checks.insert(
            "delivery".to_owned(),
            json!({ "status": status, "detail": pipeline.health() }),
        );
    }
    // Webhooks: when each last received a signed request here (never
    // failing: a quiet provider may have nothing to report).
    checks.insert(
        "webhooks".to_owned(),
        json!({ "status": "ok", "detail": { "lastSeen": state.webhooks_seen.view() } }),
    );
    // Templates: a stale cache is shown (its sends go unchecked), but does
    // not make the gateway unready.
    if let Some(templates) = state.templates.health() {
        checks.insert("templates".to_owned(), templates);
    }
    if check.healthy {
        (
            StatusCode::OK,
            Json(json!({ "status": "ok", "checks": checks })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "failing": [check.name], "checks": checks })),
        )
    }
}
