//! `DELETE /api/v1/messages/{id}` and `DELETE /api/v1/batches/{batchId}`:
//! cancel what was not handed to a provider yet. A cancelled message's
//! status is `cancelled` (terminal, with its event); one handed already is
//! `409 already-sent`. Unknown and foreign ids are `404` alike.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::status::Cancellation;

/// Cancels one message.
#[utoipa::path(delete, operation_id = "cancelMessage", path = "/api/v1/messages/{id}", tag = "messages",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The message id")),
    responses(
        (status = 200, description = "Cancelled (now or before): the message, status cancelled", body = crate::gateway::openapi::MessageView),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such message for this key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "already-sent: it was handed to its provider", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "No status store (SNS mode without STATUS_TABLE)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The status store is unavailable", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn cancel_message(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.statuses.as_ref().ok_or(ApiError::NoStatusStore)?;
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(ApiError::MessageNotFound);
    }
    let outcomes = store
        .cancel(std::slice::from_ref(&id), &caller.scope, None)
        .await
        .map_err(ApiError::StoreUnavailable)?;
    match outcomes.into_iter().next() {
        Some(Cancellation::Cancelled(record)) => Ok(Json(record.to_view())),
        Some(Cancellation::AlreadySent(record)) => Err(ApiError::AlreadySent(
            record.status().map_or("sent", |s| s.as_str()),
        )),
        Some(Cancellation::NotFound) | None => Err(ApiError::MessageNotFound),
    }
}

/// Cancels every entry of a batch not handed to a provider yet.
#[utoipa::path(delete, operation_id = "cancelBatch", path = "/api/v1/batches/{batchId}", tag = "messages",
    security(("api_key" = []), ("bearer" = [])),
    params(("batchId" = String, Path, description = "The batch answer's batchId")),
    responses(
        (status = 200, description = "What became of each entry found: cancelled, or already sent", body = crate::gateway::openapi::BatchCancelled),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "No status store (SNS mode without STATUS_TABLE)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The status store is unavailable", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn cancel_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(batch_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.statuses.as_ref().ok_or(ApiError::NoStatusStore)?;
    // Only the form the batch answer gives: another spelling of the same
    // UUID would not match the messages' `batchId`.
    let batch = uuid::Uuid::try_parse(&batch_id)
        .ok()
        .filter(|b| b.to_string() == batch_id)
        .ok_or(ApiError::BatchNotFound)?;
    // A batch's entries have ids derived from its id; the entries that
    // were refused have none stored, and are not found.
    let ids: Vec<String> = super::batch::entry_ids(batch, state.batch_limits.max_messages)
        .map(|id| id.to_string())
        .collect();
    let outcomes = store
        .cancel(&ids, &caller.scope, Some(&batch_id))
        .await
        .map_err(ApiError::StoreUnavailable)?;
    let mut messages = Vec::new();
    let (mut cancelled, mut sent) = (0, 0);
    for outcome in outcomes {
        let (record, counter) = match outcome {
            Cancellation::Cancelled(r) => (r, &mut cancelled),
            Cancellation::AlreadySent(r) => (r, &mut sent),
            Cancellation::NotFound => continue,
        };
        *counter += 1;
        messages
            .push(json!({"messageId": record.id, "status": record.status().map(|s| s.as_str())}));
    }
    if messages.is_empty() {
        return Err(ApiError::BatchNotFound);
    }
    Ok(Json(json!({
        "batchId": batch_id,
        "cancelled": cancelled,
        "alreadySent": sent,
        "messages": messages,
    })))
}
