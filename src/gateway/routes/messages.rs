//! `POST /api/v1/send`: validate, publish, answer `202` with the message id.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::contract::Envelope;
use crate::domain::{OutboundMessage, SmsInfo};
use crate::gateway::AppState;
use crate::gateway::access_log::AccessRecord;
use crate::gateway::admission::Scheduled;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::gateway::extract::JsonBody;
use crate::gateway::idempotency::{Keyed, idempotency_key, key_deadline};

/// Accepts one message. The `202` is sent only after the publisher confirmed the
/// envelope; any failure before that publishes nothing and says so.
#[utoipa::path(post, operation_id = "sendMessage", path = "/api/v1/send", tag = "messages",
    security(("api_key" = []), ("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body return the same messageId")),
    request_body(content = crate::gateway::openapi::SendRequest, content_type = "application/json"),
    responses(
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::SendRefusals,
        (status = 202, description = "Accepted: the message will not be lost", body = crate::gateway::openapi::Accepted),
        (status = 400, description = "Not JSON, invalid fields (all listed), or a bad header", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Over MAX_BODY_BYTES", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "recipient-opted-out, channel-not-configured, sender-not-allowed (naming from, sender or fallback.sender), or idempotency-key-reused", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Over RATE_LIMIT_PER_KEY", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The queue could not take it (see code)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
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
    let idempotency_key = idempotency_key(&headers)?;
    let mut message = OutboundMessage::validate(body.value, &state.send_rules)
        .map_err(|e| ApiError::InvalidFields(e.0))?;
    state
        .admission
        .resolve_senders(&caller.tenant, &mut message)?;
    let sms = message.sms;
    let scheduled = state.admission.schedule(&caller.tenant, &mut message)?;

    let claim = state.idempotency.claim_if_keyed(
        &caller.key_id,
        idempotency_key,
        &body.raw,
        key_deadline(&state),
    );
    let reservation = match claim.await? {
        Keyed::Publish(reservation) => reservation,
        Keyed::Replay(id) => {
            let record = AccessRecord::replay(Some(id));
            return Ok(accepted(id, sms, scheduled, record));
        }
        // The key answered a batch: another request.
        Keyed::ReplayResponse(_) => return Err(ApiError::IdempotencyMismatch),
    };
    // After the replay check: a retry of a message already accepted gets its
    // id back even if the recipient has opted out since (a refusal here
    // drops the reservation, freeing the key).
    state.admission.check(&caller.tenant, &message).await?;
    crate::gateway::template_check::check(&state.templates, None, &state.tenants, &message)?;
    crate::gateway::media_check::check(&state, &caller.tenant, &message).await?;

    let id = reservation.as_ref().map_or_else(Uuid::now_v7, |r| r.id);
    let recipient = message.to.masked();
    let kind = message.kind;
    let envelope = Envelope::new(id, message, &caller.key_id).for_tenant(&caller.tenant);
    let receipt = state.publisher.publish(&envelope).await?;
    crate::metrics::accepted(&caller.tenant, envelope.channel.as_str());
    if let Some(r) = reservation {
        r.complete().await;
    }
    // Not logged here: the request's one log line carries these (see access_log).
    let record = AccessRecord {
        message_id: Some(id),
        to: Some(recipient),
        message_type: Some(kind.as_str()),
        queue_message_id: receipt.queue_message_id,
        ..AccessRecord::default()
    };
    Ok(accepted(id, sms, scheduled, record))
}

/// The `202`: the id, for an SMS what it costs, and for a scheduled message
/// when it goes.
fn accepted(
    id: Uuid,
    sms: Option<SmsInfo>,
    scheduled: Scheduled,
    record: AccessRecord,
) -> Response {
    let body = match (sms, scheduled == Scheduled::default()) {
        (None, true) => format!(r#"{{"messageId":"{id}","status":"accepted"}}"#),
        (sms, _) => {
            let mut answer = serde_json::Map::new();
            answer.insert("messageId".into(), id.to_string().into());
            answer.insert("status".into(), "accepted".into());
            if let Some(sms) = sms {
                answer.insert("sms".into(), serde_json::json!(sms));
            }
            scheduled.describe(&mut answer);
            serde_json::Value::Object(answer).to_string()
        }
    };
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    response.extensions_mut().insert(record);
    response
}
