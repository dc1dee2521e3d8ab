//! `GET /api/v1/contacts/{number}`: what Herald knows of a person for the
//! caller's tenant: the customer-service window with one of its WhatsApp
//! numbers (`?from=`, default the tenant's first) and its opt-outs.

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::contract::Channel;
use crate::domain::{FieldError, PhoneNumber};
use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;

/// `?from=`: the sending number whose window is read.
#[derive(Debug, Deserialize)]
pub struct ContactQuery {
    from: Option<String>,
}

/// The window and the opt-outs of `{number}` for the caller's tenant.
#[utoipa::path(get, operation_id = "getContact", path = "/api/v1/contacts/{number}", tag = "contacts",
    security(("api_key" = []), ("bearer" = [])),
    params(("number" = String, Path, description = "E.164 with its + (%2B accepted)"),
        ("from" = Option<String>, Query, description = "The tenant's WhatsApp phone_number_id whose window is read (default: its first)")),
    responses(
        (status = 200, description = "lastInboundAt, windowOpen and windowExpiresAt (null when never heard from), optOuts", body = Object),
        (status = 400, description = "Not a number, or a bad query", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "sender-not-allowed: from is not the tenant's", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::StoreRefusals,
    ))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    query: Result<Query<ContactQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let person =
        PhoneNumber::parse(&raw).map_err(|e| ApiError::InvalidPath(format!("number: {e}")))?;
    let Ok(Query(ContactQuery { from })) = query else {
        return Err(ApiError::InvalidPath(
            "from: not a valid query parameter".into(),
        ));
    };
    let store = state.statuses.as_ref().ok_or(ApiError::NoStatusStore)?;
    let number = state
        .tenants
        .sender(&caller.tenant, Channel::Whatsapp, from.as_deref())
        .map_err(|_| {
            ApiError::SenderNotAllowed(vec![FieldError {
                field: "from".into(),
                message: "is not a WhatsApp number of this API key's tenant".into(),
            }])
        })?
        .or_else(|| state.tenants.deployment_number().map(str::to_owned));
    let window = match &number {
        Some(n) => store
            .window(n, person.as_str())
            .await
            .map_err(ApiError::StoreUnavailable)?,
        None => crate::window::Window::default(),
    };
    let opt_outs = store
        .opt_out(&caller.tenant, person.as_str())
        .await
        .map_err(ApiError::StoreUnavailable)?
        .map(|o| o.channels.into_iter().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut body = window.view(crate::clock::now_ms());
    body["number"] = json!(person.as_str());
    body["from"] = json!(number);
    body["optOuts"] = json!(opt_outs);
    Ok(Json(body))
}
