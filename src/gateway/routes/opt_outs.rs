//! The opt-out API: `PUT`, `DELETE` and `GET /api/v1/opt-outs/{number}`,
//! `{number}` in E.164 with its `+` (`%2B` accepted). Opt-outs belong to the
//! deployment: any API key may read and change them, and every change is a
//! `recipient.opt-out` event.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::Value;

use crate::domain::{FieldError, PhoneNumber};
use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::gateway::extract::JsonBody;
use crate::optout::{Change, OptOut, OptOutUpdate, channel_names};
use crate::status::StatusStore;

fn number_of(raw: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(raw).map_err(|e| ApiError::InvalidPath(format!("number: {e}")))
}

fn store_of(state: &AppState) -> Result<&std::sync::Arc<dyn StatusStore>, ApiError> {
    state.statuses.as_ref().ok_or(ApiError::NoStatusStore)
}

/// Applies one change made through the API, then forgets the number's cached
/// opt-out so this gateway's next send sees it at once.
async fn change(
    state: &AppState,
    caller: &Caller,
    number: &PhoneNumber,
    change: Change,
) -> Result<(), ApiError> {
    let store = store_of(state)?;
    let update = OptOutUpdate {
        number: number.as_str().to_owned(),
        change,
        source: "api".into(),
        at_ms: crate::status::now_ms(),
        inbound_id: None,
    };
    store
        .change_opt_outs(vec![update])
        .await
        .map_err(ApiError::StoreUnavailable)?;
    if let Some(cache) = state.admission.opt_outs() {
        cache.forget(number.as_str());
    }
    tracing::info!(api_key_id = %caller.key_id, number = %number.masked(), "opt-out changed through the API");
    Ok(())
}

async fn read(state: &AppState, number: &PhoneNumber) -> Result<Option<OptOut>, ApiError> {
    store_of(state)?
        .opt_out(number.as_str())
        .await
        .map_err(ApiError::StoreUnavailable)
}

/// `PUT`: `{"channels": ["sms" | "whatsapp" | "all", …]}` replaces the number's
/// opt-out; answers it.
#[utoipa::path(put, operation_id = "putOptOut", path = "/api/v1/opt-outs/{number}", tag = "opt-outs",
    security(("api_key" = []), ("bearer" = [])),
    params(("number" = String, Path, description = "E.164 with its + (%2B accepted)")),
    request_body(content = crate::gateway::openapi::OptOutChannels, content_type = "application/json"),
    responses(
        (status = 200, description = "The opt-out", body = OptOut),
        (status = 400, description = "Not a number, or invalid channels", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No opt-out left", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Over MAX_BODY_BYTES", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "No status store", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    body: JsonBody,
) -> Result<Json<OptOut>, ApiError> {
    let number = number_of(&raw)?;
    let channels = channels_of(&body.value).map_err(ApiError::InvalidFields)?;
    change(&state, &caller, &number, Change::Set(channels)).await?;
    read(&state, &number)
        .await?
        .map(Json)
        .ok_or(ApiError::OptOutNotFound)
}

/// `DELETE`: removes the number's opt-out, whatever its channels; `204`.
#[utoipa::path(delete, operation_id = "deleteOptOut", path = "/api/v1/opt-outs/{number}", tag = "opt-outs",
    security(("api_key" = []), ("bearer" = [])),
    params(("number" = String, Path, description = "E.164 with its + (%2B accepted)")),
    responses(
        (status = 204, description = "No opt-out any more"),
        (status = 400, description = "Not a number", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "No status store", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let number = number_of(&raw)?;
    change(&state, &caller, &number, Change::Clear).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET`: the number's opt-out, or `404`.
#[utoipa::path(get, operation_id = "getOptOut", path = "/api/v1/opt-outs/{number}", tag = "opt-outs",
    security(("api_key" = []), ("bearer" = [])),
    params(("number" = String, Path, description = "E.164 with its + (%2B accepted)")),
    responses(
        (status = 200, description = "The opt-out", body = OptOut),
        (status = 400, description = "Not a number", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No opt-out", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "No status store", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<OptOut>, ApiError> {
    let number = number_of(&raw)?;
    read(&state, &number)
        .await?
        .map(Json)
        .ok_or(ApiError::OptOutNotFound)
}

/// The `channels` of a `PUT` body: a non-empty array of known channel names.
fn channels_of(body: &Value) -> Result<BTreeSet<String>, Vec<FieldError>> {
    let error = |field: String, message: String| vec![FieldError { field, message }];
    let Value::Object(map) = body else {
        return Err(error(
            String::new(),
            "the body must be a JSON object".into(),
        ));
    };
    if let Some(key) = map.keys().find(|k| *k != "channels") {
        return Err(error(
            key.clone(),
            "unknown field; expected: channels".into(),
        ));
    }
    let Some(Value::Array(list)) = map.get("channels") else {
        return Err(error(
            "channels".into(),
            format!(
                "is required: an array of {}",
                channel_names()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    if list.is_empty() {
        return Err(error(
            "channels".into(),
            "must name at least one channel (DELETE removes an opt-out)".into(),
        ));
    }
    let mut errors = Vec::new();
    let mut channels = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        match c.as_str() {
            Some(name) if channel_names().any(|c| c == name) => {
                channels.insert(name.to_owned());
            }
            _ => errors.push(FieldError {
                field: format!("channels[{i}]"),
                message: format!(
                    "must be one of: {}",
                    channel_names().collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }
    if errors.is_empty() {
        Ok(channels)
    } else {
        Err(errors)
    }
}
