//! The embedded default's dead letters: `GET /api/v1/dead-letters` (newest
//! first), `POST /api/v1/dead-letters/{id}/redrive` (back to the queue,
//! attempts reset, a `redriven` status entry) and `DELETE
//! /api/v1/dead-letters/{id}`. Each key sees and acts on its own; a key id in
//! `ADMIN_KEY_IDS` on every tenant's. With SNS they live in the SQS
//! dead-letter queue instead, so these routes answer `404` there.
//!
//! Events the receiver at `EVENTS_WEBHOOK_URL` never took (after
//! `DELIVERY_MAX_ATTEMPTS`) have the same three routes under
//! `/api/v1/event-dead-letters`: a redrive puts the event back in the outbox,
//! due now with its attempts reset. Events belong to the deployment (an
//! inbound message or an opt-out has no API key), so only key ids in
//! `ADMIN_KEY_IDS` see them; other keys get `404`. They expire with
//! statuses (`STATUS_TTL_DAYS`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::embedded::DeadLetterKind;
use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::tenants::Scope;

/// What `caller` may see of dead letters of `kind`: its scope (its key's,
/// its tenant's, an admin's: all); `Err` for events unless an admin.
fn scope_of(caller: &Caller, kind: DeadLetterKind) -> Result<&Scope, ApiError> {
    match (kind, &*caller.scope) {
        (DeadLetterKind::Events, Scope::Key(_) | Scope::Tenant(_)) => {
            Err(ApiError::DeadLetterNotFound)
        }
        (_, scope) => Ok(scope),
    }
}

async fn settle(
    state: &AppState,
    caller: &Caller,
    kind: DeadLetterKind,
    id: &str,
    redrive: bool,
) -> Result<(), ApiError> {
    let scope = scope_of(caller, kind)?;
    let Some(dead_letters) = state.publisher.dead_letters() else {
        return Err(ApiError::NotFound);
    };
    match dead_letters.settle(kind, id, scope, redrive).await {
        Ok(true) => {
            tracing::info!(dead_letter = %id, api_key_id = %caller.key_id,
                action = if redrive { "redrive" } else { "delete" }, "dead letter settled by an operator");
            Ok(())
        }
        // Unknown, or another key's: the same answer.
        Ok(false) => Err(ApiError::DeadLetterNotFound),
        Err(e) => Err(ApiError::Unavailable(e)),
    }
}

/// `POST /api/v1/dead-letters/{id}/redrive`: back to the queue, due now, its
/// attempts reset; the message's status history gets a `redriven` entry
/// (its failure kept before it). `{id}` is the id the list shows: the message
/// id (`<id>.sms` for a failover's SMS leg).
#[utoipa::path(post, operation_id = "redriveDeadLetter", path = "/api/v1/dead-letters/{id}/redrive", tag = "operations",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The dead letter's id, as listed")),
    responses(
        (status = 202, description = "Back in the queue", body = crate::gateway::openapi::Redriven),
        (status = 404, description = "No such dead letter for this key (or SNS mode)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::QueueRefusals,
    ))]
pub async fn redrive(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    settle(&state, &caller, DeadLetterKind::Messages, &id, true).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "redriven"})),
    ))
}

/// `DELETE /api/v1/dead-letters/{id}`: forgets it; `204`.
#[utoipa::path(delete, operation_id = "deleteDeadLetter", path = "/api/v1/dead-letters/{id}", tag = "operations",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The dead letter's id, as listed")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 404, description = "No such dead letter for this key (or SNS mode)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::QueueRefusals,
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    settle(&state, &caller, DeadLetterKind::Messages, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// How many to return (1-1000), default 100.
    limit: Option<usize>,
}

/// Lists dead letters with their reason and attempts: the caller's own (those
/// sent with its API key), or every tenant's for a key id named in
/// `ADMIN_KEY_IDS`. With SNS they live in the SQS dead-letter queue instead, so
/// this route answers 404 there.
#[utoipa::path(get, operation_id = "listDeadLetters", path = "/api/v1/dead-letters", tag = "operations",
    security(("api_key" = []), ("bearer" = [])),
    params(("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, description = "Newest first", body = crate::gateway::openapi::DeadLetterList),
        (status = 400, description = "A bad limit", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "SNS mode: they are in the SQS dead-letter queue", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::QueueRefusals,
    ))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    list_of(&state, &caller, DeadLetterKind::Messages, query).await
}

async fn list_of(
    state: &AppState,
    caller: &Caller,
    kind: DeadLetterKind,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = match query {
        Ok(Query(ListQuery { limit: None })) => 100,
        Ok(Query(ListQuery { limit: Some(n) })) if (1..=1000).contains(&n) => n,
        _ => {
            return Err(ApiError::InvalidHeader(
                "query parameter limit must be a number from 1 to 1000".into(),
            ));
        }
    };
    let scope = scope_of(caller, kind)?;
    let Some(dead_letters) = state.publisher.dead_letters() else {
        return Err(ApiError::NotFound);
    };
    match dead_letters.list(kind, limit, scope).await {
        Ok(items) => Ok(Json(json!({ "deadLetters": items }))),
        Err(e) => Err(ApiError::Unavailable(e)),
    }
}

/// Lists the events the receiver never took, newest first (admin keys only;
/// `404` for others and with SNS, where events go to `EVENTS_TOPIC_ARN`).
#[utoipa::path(get, operation_id = "listEventDeadLetters", path = "/api/v1/event-dead-letters", tag = "operations",
    security(("api_key" = []), ("bearer" = [])),
    params(("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses(
        (status = 200, description = "Newest first; each dead letter's `envelope` is the event", body = crate::gateway::openapi::DeadLetterList),
        (status = 400, description = "A bad limit", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "Not an admin key, or SNS mode", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::QueueRefusals,
    ))]
pub async fn list_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    list_of(&state, &caller, DeadLetterKind::Events, query).await
}

/// `POST /api/v1/event-dead-letters/{id}/redrive`: the event back in the
/// outbox, due now, its attempts reset (admin keys only).
#[utoipa::path(post, operation_id = "redriveEventDeadLetter", path = "/api/v1/event-dead-letters/{id}/redrive", tag = "operations",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The event id, as listed")),
    responses(
        (status = 202, description = "Back in the outbox", body = crate::gateway::openapi::Redriven),
        (status = 404, description = "No such event dead letter, not an admin key, or SNS mode", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::QueueRefusals,
    ))]
pub async fn redrive_event(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    settle(&state, &caller, DeadLetterKind::Events, &id, true).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "redriven"})),
    ))
}

/// `DELETE /api/v1/event-dead-letters/{id}`: forgets it; `204` (admin keys only).
#[utoipa::path(delete, operation_id = "deleteEventDeadLetter", path = "/api/v1/event-dead-letters/{id}", tag = "operations",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The event id, as listed")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 404, description = "No such event dead letter, not an admin key, or SNS mode", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::QueueRefusals,
    ))]
pub async fn delete_event(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    settle(&state, &caller, DeadLetterKind::Events, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
