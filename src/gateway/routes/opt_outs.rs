//! The opt-out API: `PUT`, `DELETE` and `GET /api/v1/opt-outs/{number}`,
//! `{number}` in E.164 with its `+` (`%2B` accepted). Opt-outs belong to a
//! tenant: a key reads and changes its own tenant's only (the one tenant
//! `default` without `TENANTS_FILE`); an admin (`ADMIN_KEY_IDS`) may name
//! another with `?tenant=`. Every change is a `recipient.opt-out` event.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
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

/// `?tenant=`: the tenant an admin acts on.
#[derive(Debug, Deserialize)]
pub struct TenantQuery {
    tenant: Option<String>,
}

type TenantParam = Result<Query<TenantQuery>, axum::extract::rejection::QueryRejection>;

/// The tenant whose consent `caller` acts on: its own, or for an admin the
/// one `?tenant=` names. Another tenant named by a key that is not an
/// admin's is not found, as if it had no opt-out: nothing is revealed.
fn tenant_of(state: &AppState, caller: &Caller, query: TenantParam) -> Result<String, ApiError> {
    let Ok(Query(TenantQuery { tenant })) = query else {
        return Err(ApiError::InvalidPath(
            "tenant: not a valid query parameter".into(),
        ));
    };
    match tenant {
        None => Ok(caller.tenant.to_string()),
        Some(t) if *t == *caller.tenant => Ok(t),
        Some(t) if caller.is_admin() && state.tenants.get(&t).is_some() => Ok(t),
        Some(t) if caller.is_admin() => Err(ApiError::InvalidPath(format!(
            "tenant: {t:?} is not a tenant of this deployment"
        ))),
        Some(_) => Err(ApiError::OptOutNotFound),
    }
}

fn store_of(state: &AppState) -> Result<&std::sync::Arc<dyn StatusStore>, ApiError> {
    state.statuses.as_ref().ok_or(ApiError::NoStatusStore)
}

/// Applies one change made through the API, then forgets the number's cached
/// opt-out so this gateway's next send sees it at once.
async fn change(
    state: &AppState,
    caller: &Caller,
    (tenant, number): (&str, &PhoneNumber),
    change: Change,
) -> Result<(), ApiError> {
    let store = store_of(state)?;
    let update = OptOutUpdate {
        tenant: tenant.to_owned(),
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
        cache.forget(tenant, number.as_str());
    }
    tracing::info!(api_key_id = %caller.key_id, tenant, number = %number.masked(), "opt-out changed through the API");
    Ok(())
}

async fn read(
    state: &AppState,
    tenant: &str,
    number: &PhoneNumber,
) -> Result<Option<OptOut>, ApiError> {
    store_of(state)?
        .opt_out(tenant, number.as_str())
        .await
        .map_err(ApiError::StoreUnavailable)
}

/// `PUT`: `{"channels": ["sms" | "whatsapp" | "all", …]}` replaces the number's
/// opt-out; answers it.
#[utoipa::path(put, operation_id = "putOptOut", path = "/api/v1/opt-outs/{number}", tag = "opt-outs",
    security(("api_key" = []), ("bearer" = [])),
    params(("number" = String, Path, description = "E.164 with its + (%2B accepted)"),
        ("tenant" = Option<String>, Query, description = "An admin's: the tenant to act on (default: the key's own)")),
    request_body(content = crate::gateway::openapi::OptOutChannels, content_type = "application/json"),
    responses(
        (status = 200, description = "The opt-out", body = OptOut),
        (status = 400, description = "Not a number, or invalid channels", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No opt-out left", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Over MAX_BODY_BYTES", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::StoreRefusals,
    ))]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    query: TenantParam,
    body: JsonBody,
) -> Result<Json<OptOut>, ApiError> {
    let number = number_of(&raw)?;
    let tenant = tenant_of(&state, &caller, query)?;
    let channels = channels_of(&body.value).map_err(ApiError::InvalidFields)?;
    change(&state, &caller, (&tenant, &number), Change::Set(channels)).await?;
    read(&state, &tenant, &number)
        .await?
        .map(Json)
        .ok_or(ApiError::OptOutNotFound)
}

/// `DELETE`: removes the number's opt-out, whatever its channels; `204`.
#[utoipa::path(delete, operation_id = "deleteOptOut", path = "/api/v1/opt-outs/{number}", tag = "opt-outs",
    security(("api_key" = []), ("bearer" = [])),
    params(("number" = String, Path, description = "E.164 with its + (%2B accepted)"),
        ("tenant" = Option<String>, Query, description = "An admin's: the tenant to act on (default: the key's own)")),
    responses(
        (status = 204, description = "No opt-out any more"),
        (status = 400, description = "Not a number, or (an admin's) an unknown tenant", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "Another tenant named by a key that is not an admin's", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::StoreRefusals,
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    query: TenantParam,
) -> Result<StatusCode, ApiError> {
    let number = number_of(&raw)?;
    let tenant = tenant_of(&state, &caller, query)?;
    change(&state, &caller, (&tenant, &number), Change::Clear).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET`: the number's opt-out, or `404`.
#[utoipa::path(get, operation_id = "getOptOut", path = "/api/v1/opt-outs/{number}", tag = "opt-outs",
    security(("api_key" = []), ("bearer" = [])),
    params(("number" = String, Path, description = "E.164 with its + (%2B accepted)"),
        ("tenant" = Option<String>, Query, description = "An admin's: the tenant to act on (default: the key's own)")),
    responses(
        (status = 200, description = "The opt-out", body = OptOut),
        (status = 400, description = "Not a number", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No opt-out", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::StoreRefusals,
    ))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    query: TenantParam,
) -> Result<Json<OptOut>, ApiError> {
    let number = number_of(&raw)?;
    let tenant = tenant_of(&state, &caller, query)?;
    read(&state, &tenant, &number)
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
