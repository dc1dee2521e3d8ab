//! `POST /api/v1/send`: validate, publish, answer `202` with the message id.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use crate::contract::Envelope;
use crate::domain::OutboundMessage;
use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::gateway::extract::JsonBody;
use crate::gateway::idempotency::{Claim, validate_key};

/// Accepts one message. The `202` is sent only after the publisher confirmed the
/// envelope; any failure before that publishes nothing and says so.
pub async fn send(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    if let Some(limiter) = &state.rate_limiter {
        limiter
            .check(&caller.key_id)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    }
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::InvalidHeader("Idempotency-Key must be visible ASCII".into())
            })?;
            validate_key(key).map_err(ApiError::InvalidHeader)?;
            Some(key)
        }
    };

    let message =
        OutboundMessage::try_from(body.value).map_err(|e| ApiError::InvalidFields(e.0))?;

    let reservation = match idempotency_key {
        None => None,
        Some(key) => match state
            .idempotency
            .claim(&caller.key_id, key, &body.raw)
            .await
        {
            Claim::Replay(id) => {
                tracing::info!(message_id = %id, "idempotent replay; nothing published");
                return Ok(accepted(id));
            }
            Claim::Mismatch => return Err(ApiError::IdempotencyMismatch),
            Claim::New(reservation) => Some(reservation),
        },
    };

    let id = reservation.as_ref().map_or_else(Uuid::now_v7, |r| r.id);
    let recipient = message.to.masked();
    let envelope = Envelope::new(id, message, &caller.key_id);
    let receipt = state.publisher.publish(&envelope).await?;
    if let Some(r) = reservation {
        r.complete();
    }
    tracing::info!(
        message_id = %id,
        to = %recipient,
        message_type = envelope.message_type(),
        queue_message_id = receipt.queue_message_id.as_deref(),
        "message accepted"
    );
    Ok(accepted(id))
}

fn accepted(id: Uuid) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "messageId": id, "status": "accepted" })),
    )
        .into_response()
}
