//! `GET /api/v1/messages/{id}`: what became of a message the caller sent.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::Value;

use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;

/// The message's status and history, as `MessageRecord::to_view` shapes
/// them. `404` for an unknown id and for another key's message alike, so ids
/// cannot be probed across tenants; `501` when this deployment keeps no
/// statuses.
#[utoipa::path(get, operation_id = "getMessage", path = "/api/v1/messages/{id}", tag = "messages",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "The status and history", body = crate::gateway::openapi::MessageView),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "No status store (SNS mode without STATUS_TABLE)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The status store is unavailable", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.statuses.as_ref().ok_or(ApiError::NoStatusStore)?;
    // Ids are UUIDs: anything else cannot exist, and is not looked up.
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(ApiError::MessageNotFound);
    }
    match store.get(&id, &caller.scope).await {
        Ok(Some(record)) => Ok(Json(record.to_view())),
        Ok(None) => Err(ApiError::MessageNotFound),
        Err(e) => Err(ApiError::StoreUnavailable(e)),
    }
}
