//! `GET /api/v1/messages` (search, newest first, by opaque cursor) and
//! `GET /api/v1/stats` (counts by status, error code and channel, with a
//! series): over the caller's own messages — its tenant's with
//! `TENANTS_FILE`, otherwise its key's. Parameters are read by
//! [`crate::search::query`]; every invalid one is named in the `400`.

use axum::extract::{RawQuery, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::search::{Owner, cursor, query};

fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .take(query::MAX_PARAMS + 1)
        .collect()
}

fn owner(caller: &Caller) -> Owner {
    Owner::of(&caller.scope, &caller.key_id, &caller.tenant)
}

/// The caller's messages that match the filters, newest first.
#[utoipa::path(get, operation_id = "searchMessages", path = "/api/v1/messages", tag = "messages",
    security(("api_key" = []), ("bearer" = [])),
    params(
        ("to" = Option<String>, Query, description = "The recipient, E.164"),
        ("status" = Option<String>, Query, description = "The current status: accepted, redriven, submitted, sent, delivered, read, cancelled, failed"),
        ("channel" = Option<String>, Query, description = "whatsapp or sms: the channel of the current status"),
        ("from" = Option<String>, Query, description = "The sender (phone_number_id or SMS sender) named at acceptance"),
        ("batchId" = Option<String>, Query, description = "The batch"),
        ("since" = Option<String>, Query, description = "Accepted at or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "Accepted before (RFC 3339)"),
        ("limit" = Option<u32>, Query, description = "1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page, with the same filters"),
    ),
    responses(
        (status = 200, description = "A page of messages and the cursor of the next (null at the end)", body = crate::gateway::openapi::MessageList),
        (status = 400, description = "A parameter is invalid (each named)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::StoreRefusals,
    ))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let search = query::search(pairs(raw.as_deref()), owner(&caller), &caller.key_id)
        .map_err(ApiError::InvalidFields)?;
    let store = state.search.as_ref().ok_or(ApiError::NoStatusStore)?;
    let found = store
        .search(&search)
        .await
        .map_err(ApiError::StoreUnavailable)?;
    let next = found
        .next
        .as_ref()
        .map(|p| cursor::encode(p, &search.owner, &search.filters, &search.asked_by));
    let messages: Vec<Value> = found.records.iter().map(|r| r.to_view()).collect();
    Ok(Json(json!({"messages": messages, "nextCursor": next})))
}

/// Counts of the caller's messages accepted in the range, by current status.
#[utoipa::path(get, operation_id = "getStats", path = "/api/v1/stats", tag = "messages",
    security(("api_key" = []), ("bearer" = [])),
    params(
        ("since" = Option<String>, Query, description = "From (RFC 3339; rounded down to the minute; default: 24 hours before until)"),
        ("until" = Option<String>, Query, description = "To, exclusive (RFC 3339; rounded up to the minute; default: now)"),
        ("channel" = Option<String>, Query, description = "whatsapp or sms"),
        ("granularity" = Option<String>, Query, description = "minute, hour or day: adds a series of buckets aligned to UTC (at most 1,500)"),
    ),
    responses(
        (status = 200, description = "byStatus, byErrorCode, byChannel, smsSegments, and series with a granularity", body = crate::gateway::openapi::Stats),
        (status = 400, description = "A parameter is invalid (each named)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::StoreRefusals,
    ))]
pub async fn stats(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = query::stats(
        pairs(raw.as_deref()),
        owner(&caller),
        crate::clock::now_ms(),
    )
    .map_err(ApiError::InvalidFields)?;
    let store = state.search.as_ref().ok_or(ApiError::NoStatusStore)?;
    let buckets = store
        .counts(&query)
        .await
        .map_err(ApiError::StoreUnavailable)?;
    Ok(Json(crate::search::Counts::sum(&query, &buckets).to_json()))
}
