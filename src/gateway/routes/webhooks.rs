//! The providers' webhooks: no API key; each checks its own signature over
//! the raw bytes before anything is parsed, and answers `200` only once what
//! it carries is recorded (so the provider retries otherwise).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::channels::whatsapp::webhook;
use crate::gateway::AppState;
use crate::gateway::error::ApiError;
use crate::gateway::extract::RawBody;

/// `GET /webhooks/whatsapp`: Meta's subscription handshake. The raw
/// `hub.challenge` comes back as text when the mode is `subscribe` and the
/// token is `WHATSAPP_VERIFY_TOKEN`; anything else is `403`.
pub async fn whatsapp_verify(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let expected = state
        .webhooks
        .whatsapp_verify_token
        .as_ref()
        .ok_or(ApiError::NotFound)?;
    let token = query.get("hub.verify_token").map_or("", String::as_str);
    let token_matches: bool = token.as_bytes().ct_eq(expected.expose().as_bytes()).into();
    match query.get("hub.challenge") {
        Some(challenge)
            if query.get("hub.mode").map(String::as_str) == Some("subscribe") && token_matches =>
        {
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                challenge.clone(),
            )
                .into_response())
        }
        _ => Err(ApiError::SignatureInvalid),
    }
}

/// `POST /webhooks/whatsapp`: statuses and inbound messages, signed with
/// `WHATSAPP_APP_SECRET`.
pub async fn whatsapp_receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let (Some(secret), Some(store)) = (&state.webhooks.whatsapp_app_secret, &state.statuses) else {
        return Err(ApiError::NotFound);
    };
    let signature = headers
        .get(webhook::SIGNATURE_HEADER)
        .ok_or(ApiError::SignatureMissing("X-Hub-Signature-256"))?
        .to_str()
        .map_err(|_| ApiError::SignatureInvalid)?;
    if !webhook::signature_matches(secret.expose().as_bytes(), &body, signature) {
        return Err(ApiError::SignatureInvalid);
    }
    let content = webhook::read(&body).map_err(ApiError::MalformedJson)?;
    for error in &content.errors {
        tracing::warn!(webhook = "whatsapp", error = %error, "Meta reported an error in a webhook");
    }
    if content.skipped > 0 {
        tracing::debug!(
            webhook = "whatsapp",
            skipped = content.skipped,
            "statuses or messages Herald does not track were skipped"
        );
    }
    if content.updates.is_empty() && content.inbound.is_empty() {
        return Ok(StatusCode::OK);
    }
    store
        .record(content.updates, content.inbound)
        .await
        .map_err(|e| ApiError::StoreUnavailable(e.to_string()))?;
    Ok(StatusCode::OK)
}
