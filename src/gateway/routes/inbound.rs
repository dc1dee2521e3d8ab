//! `POST /api/v1/inbound/{providerMessageId}/read`: marks a WhatsApp message
//! the caller's tenant received as read, from the number that received it.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use crate::channels::whatsapp::read_receipts::ReadError;
use crate::domain::FieldError;
use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;

/// Marks the message read; `{"typingIndicator": true}` shows the person
/// that a reply is being typed.
#[utoipa::path(post, operation_id = "markInboundRead", path = "/api/v1/inbound/{providerMessageId}/read", tag = "contacts",
    security(("api_key" = []), ("bearer" = [])),
    params(("providerMessageId" = String, Path, description = "The wamid of a message the tenant received")),
    request_body(content = Option<Object>, content_type = "application/json", description = r#"Optional: {"typingIndicator": true}"#),
    responses(
        (status = 204, description = "Marked read"),
        (status = 400, description = "A body that is not {\"typingIndicator\": bool}", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such message received for this tenant", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "channel-not-configured: no credentials here for the number that received it", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 502, description = "The Cloud API refused or did not answer", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::StoreRefusals,
    ))]
pub async fn read(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let typing = typing_indicator(&body)?;
    let store = state.statuses.as_ref().ok_or(ApiError::NoStatusStore)?;
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::InboundNotFound);
    }
    let received = store
        .received(&id)
        .await
        .map_err(ApiError::StoreUnavailable)?
        .filter(|r| caller.is_admin() || r.tenants.iter().any(|t| *t == *caller.tenant))
        .ok_or(ApiError::InboundNotFound)?;
    match state
        .read_receipts
        .mark(&received.number_id, &id, typing)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(ReadError::NoCredentials) => Err(ApiError::ChannelNotConfigured {
            field: "providerMessageId",
            channel: "whatsapp",
        }),
        Err(e @ ReadError::Provider(_)) => Err(ApiError::ProviderFailed(e.to_string())),
    }
}

/// The optional body: nothing, or `{"typingIndicator": bool}`.
fn typing_indicator(body: &[u8]) -> Result<bool, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let invalid = |message: &str| {
        ApiError::InvalidFields(vec![FieldError {
            field: "typingIndicator".into(),
            message: message.into(),
        }])
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if map.keys().all(|k| k == "typingIndicator") => {
            match map.get("typingIndicator") {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(invalid("must be true or false")),
            }
        }
        _ => Err(invalid(
            r#"the body must be {"typingIndicator": true|false} or empty"#,
        )),
    }
}
