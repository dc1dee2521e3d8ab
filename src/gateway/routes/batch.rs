//! `POST /api/v1/send/batch`: many messages in one call, for campaigns.
//!
//! Each entry is `defaults` overlaid by the entry and validated by the same
//! code as a single send; the valid ones are published concurrently (the SNS
//! batcher coalesces them into `PublishBatch` calls of 10, the embedded queue
//! commits them in one transaction) and the answer, `200`, lists one result
//! per entry in input order: `accepted` (with its `messageId`: the 202
//! promise, and for an SMS its `sms` cost), `rejected` (the field errors a
//! 400 would list, or the `code` a single send's 422 would have:
//! `recipient-opted-out`, `channel-not-configured`) or `unavailable`
//! (`retryAfter`; `mayHaveBeenPublished` when the queue's answer was lost).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::contract::{Envelope, Priority};
use crate::domain::batch::BatchRequest;
use crate::domain::validation::cap_errors;
use crate::domain::{FieldError, OutboundMessage, SmsInfo};
use crate::gateway::AppState;
use crate::gateway::access_log::AccessRecord;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::gateway::extract::JsonBody;
use crate::gateway::idempotency::{Keyed, idempotency_key, key_deadline};

/// Most field errors a `400` for a batch with no valid entry lists.
const MAX_BATCH_ERRORS: usize = 100;
/// Entries checked at once (each may read the status store).
const ADMIT_IN_FLIGHT: usize = 32;

/// The answer: counts, then one result per entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct BatchResponse {
    /// Names the batch for `DELETE /api/v1/batches/{batchId}` and the
    /// messages' `batchId`.
    batch_id: Uuid,
    accepted: usize,
    rejected: usize,
    unavailable: usize,
    results: Vec<EntryResult>,
}

/// What became of one entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct EntryResult {
    index: usize,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<Uuid>,
    /// Why the entry was refused when it is valid (`recipient-opted-out`,
    /// `channel-not-configured`).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
    /// What an SMS entry costs.
    #[serde(skip_serializing_if = "Option::is_none")]
    sms: Option<SmsInfo>,
    /// Seconds to wait before sending this entry again.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    may_have_been_published: bool,
    /// When the entry is due, if later than now (`sendAt`, quiet hours).
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_for: Option<String>,
}

impl EntryResult {
    fn new(index: usize, status: &'static str) -> Self {
        Self {
            index,
            status,
            message_id: None,
            code: None,
            errors: None,
            sms: None,
            retry_after: None,
            may_have_been_published: false,
            scheduled_for: None,
        }
    }
}

/// Why an entry is not published: invalid fields, or a valid message the
/// gateway's checks refuse (its channel, its recipient's opt-out).
enum Refusal {
    Invalid(Vec<FieldError>),
    Refused(ApiError),
}

/// The id of entry `index` of a batch whose first id is `base`: the same
/// UUID v7 with its last random bits changed, so the entries of one batch sort
/// together and a retry of the batch (same `Idempotency-Key`) gets the same ids.
fn entry_id(base: Uuid, index: usize) -> Uuid {
    entry_bits(base, index)
}

/// The id of the batch whose first id is `base`: like an entry's, with an
/// index no entry has, so it sorts with them and a retry gets it again.
pub(crate) fn batch_id(base: Uuid) -> Uuid {
    entry_bits(base, usize::from(u16::MAX))
}

/// The ids a batch named `batch` may have given its entries, for at most
/// `max_entries` entries (`BATCH_MAX_MESSAGES`).
pub(crate) fn entry_ids(batch: Uuid, max_entries: usize) -> impl Iterator<Item = Uuid> {
    // The batch id is its base id's bits with the entry bits of index
    // 0xFFFF changed: changed again, they give the base back.
    let base = entry_bits(batch, usize::from(u16::MAX));
    (0..max_entries).map(move |index| entry_id(base, index))
}

fn entry_bits(base: Uuid, index: usize) -> Uuid {
    let mut bytes = *base.as_bytes();
    let [hi, lo] = u16::try_from(index).unwrap_or(u16::MAX).to_be_bytes();
    bytes[14] ^= hi;
    bytes[15] ^= lo;
    Uuid::from_bytes(bytes)
}

/// Accepts a batch; see the module documentation.
#[utoipa::path(post, operation_id = "sendBatch", path = "/api/v1/send/batch", tag = "messages",
    security(("api_key" = []), ("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry of the whole batch safe")),
    request_body(content = crate::gateway::openapi::BatchRequest, content_type = "application/json"),
    responses(
        crate::gateway::error::KeyRefusal,
        crate::gateway::error::SendRefusals,
        (status = 200, description = "One result per entry, in order", body = BatchResponse),
        (status = 400, description = "Not JSON, not a batch, or no valid entry", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Over BATCH_MAX_BODY_BYTES", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used with another body", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "Idempotency keys in flight, or the request timed out", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn send_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let batch =
        BatchRequest::parse(body.value, state.batch_limits).map_err(ApiError::InvalidFields)?;
    let validated: Vec<Result<OutboundMessage, Vec<FieldError>>> = batch
        .entries
        .into_iter()
        .map(|entry| OutboundMessage::validate(entry, &state.send_rules).map_err(|e| e.0))
        .collect();
    if validated.iter().all(Result::is_err) {
        return Err(all_invalid(validated));
    }
    let claim = state.idempotency.claim_if_keyed(
        &caller.key_id,
        idempotency_key,
        &body.raw,
        key_deadline(&state),
    );
    let reservation = match claim.await? {
        Keyed::Publish(reservation) => reservation,
        Keyed::ReplayResponse(response) => {
            return Ok(answer(response.to_vec(), AccessRecord::replay(None)));
        }
        // The key answered a single send: another request.
        Keyed::Replay(_) => return Err(ApiError::IdempotencyMismatch),
    };
    let base = reservation.as_ref().map_or_else(Uuid::now_v7, |r| r.id);
    let admitted = admit(&state, &caller.tenant, validated).await;
    let valid = admitted.iter().filter(|r| r.is_ok()).count();
    let tokens = take_tokens(&state, &caller, reservation.as_ref(), valid);
    let results = publish(&state, &caller, base, admitted, tokens).await?;
    let count = |status| results.iter().filter(|r| r.status == status).count();
    let response = BatchResponse {
        batch_id: batch_id(base),
        accepted: count("accepted"),
        rejected: count("rejected"),
        unavailable: count("unavailable"),
        results,
    };
    let bytes = serde_json::to_vec(&response).expect("a batch response always serialises");
    if let Some(reservation) = reservation {
        reservation.complete_with(Arc::from(bytes.as_slice())).await;
    }
    Ok(answer(bytes, AccessRecord::default()))
}

/// The `400` for a batch with no valid entry: every error by its path. Each
/// entry lists at most MAX_FIELD_ERRORS; the answer at most
/// MAX_BATCH_ERRORS, so its size does not grow with the entries.
fn all_invalid(validated: Vec<Result<OutboundMessage, Vec<FieldError>>>) -> ApiError {
    let errors = validated
        .into_iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.err()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| FieldError {
                    field: if e.field.is_empty() {
                        format!("messages[{i}]")
                    } else {
                        format!("messages[{i}].{}", e.field)
                    },
                    message: e.message,
                })
        })
        .collect();
    ApiError::InvalidFields(cap_errors(errors, MAX_BATCH_ERRORS))
}

/// The gateway's checks (senders, channel, opt-out, window, template) on
/// each valid entry of `tenant`, [`ADMIT_IN_FLIGHT`] at a time (with
/// DynamoDB each may read the store), in input order.
async fn admit(
    state: &AppState,
    tenant: &str,
    validated: Vec<Result<OutboundMessage, Vec<FieldError>>>,
) -> Vec<Result<OutboundMessage, Refusal>> {
    // One look at the templates for the whole batch.
    let templates = state.templates.snapshot();
    let templates = &templates;
    futures_util::stream::iter(validated)
        .map(|entry| async move {
            let mut message = entry.map_err(Refusal::Invalid)?;
            state
                .admission
                .resolve_senders(tenant, &mut message)
                .map_err(Refusal::Refused)?;
            state
                .admission
                .schedule(tenant, &mut message)
                .map_err(Refusal::Refused)?;
            state
                .admission
                .check(tenant, &message)
                .await
                .and_then(|()| {
                    crate::gateway::template_check::check(
                        &state.templates,
                        Some(templates),
                        &state.tenants,
                        &message,
                    )
                })
                .map_err(Refusal::Refused)?;
            crate::gateway::media_check::check(state, tenant, &message)
                .await
                .map_err(|e| match e {
                    ApiError::InvalidFields(errors) => Refusal::Invalid(errors),
                    other => Refusal::Refused(other),
                })?;
            Ok(message)
        })
        .buffered(ADMIT_IN_FLIGHT)
        .collect()
        .await
}

/// The result of a refused entry.
fn rejected(index: usize, refusal: Refusal) -> EntryResult {
    let mut result = EntryResult::new(index, "rejected");
    match refusal {
        // A template's parameters: the fields, as for an invalid entry.
        Refusal::Invalid(errors) | Refusal::Refused(ApiError::InvalidFields(errors)) => {
            result.errors = Some(errors);
        }
        Refusal::Refused(error) => {
            result.code = Some(error.code());
            result.errors = Some(vec![FieldError {
                field: match &error {
                    ApiError::ChannelNotConfigured { field, .. } => (*field).to_owned(),
                    ApiError::SenderNotAllowed(errors) => errors
                        .first()
                        .map_or_else(|| "from".to_owned(), |e| e.field.clone()),
                    ApiError::TemplateNotFound { .. } | ApiError::TemplateNotApproved { .. } => {
                        "template.name".to_owned()
                    }
                    _ => "to".to_owned(),
                },
                message: error.to_string(),
            }]);
        }
    }
    result
}

/// Publishes the admitted entries the rate limit `tokens` (granted, wait)
/// allow, concurrently, and answers every entry in input order.
async fn publish(
    state: &AppState,
    caller: &Caller,
    base: Uuid,
    admitted: Vec<Result<OutboundMessage, Refusal>>,
    (mut granted, wait): (usize, std::time::Duration),
) -> Result<Vec<EntryResult>, ApiError> {
    let mut results: Vec<EntryResult> = Vec::with_capacity(admitted.len());
    let mut publishing = JoinSet::new();
    for (index, entry) in admitted.into_iter().enumerate() {
        match entry {
            Err(refusal) => results.push(rejected(index, refusal)),
            Ok(_) if granted == 0 => {
                let mut result = EntryResult::new(index, "unavailable");
                result.retry_after = Some(wait.as_secs().max(1));
                results.push(result);
            }
            Ok(mut message) => {
                granted -= 1;
                let id = entry_id(base, index);
                let sms = message.sms;
                // A batch is a campaign unless it says otherwise.
                message.priority.get_or_insert(Priority::Bulk);
                let scheduled_for = message.send_at_ms.map(crate::clock::format_ms);
                let mut envelope =
                    Envelope::new(id, message, &caller.key_id).for_tenant(&caller.tenant);
                envelope.batch_id = Some(batch_id(base).to_string());
                let publisher = state.publisher.clone();
                let channel = envelope.channel.as_str();
                publishing
                    .spawn(async move { (index, id, channel, publisher.publish(&envelope).await) });
                let mut result = EntryResult::new(index, "accepted");
                result.sms = sms;
                result.scheduled_for = scheduled_for;
                results.push(result);
            }
        }
    }
    while let Some(done) = publishing.join_next().await {
        let (index, id, channel, outcome) = done
            .map_err(|e| ApiError::internal_caused_by("a batch entry's publish task failed", e))?;
        let result = &mut results[index];
        match outcome {
            Ok(_) => {
                crate::metrics::accepted(&caller.tenant, channel);
                result.message_id = Some(id);
            }
            Err(error) => {
                result.status = "unavailable";
                result.retry_after = Some(error.retry_after().as_secs().max(1));
                result.may_have_been_published = error.kind.may_have_published();
                if result.may_have_been_published {
                    // The id is the one a retry of this batch would use.
                    result.message_id = Some(id);
                }
            }
        }
    }
    Ok(results)
}

/// The rate limit counts messages: a batch takes one token per valid entry,
/// and the entries past the tokens it got are `unavailable`. Tokens are
/// granted in entry order, and what a keyed attempt was granted is recorded
/// before it publishes: a retry of it (its answer lost) keeps those entries
/// without paying again, since they may already be out and refusing them now
/// would have the client resend them under new ids, and takes tokens only for
/// the entries past them. A retry of an attempt never counted pays in full.
fn take_tokens(
    state: &AppState,
    caller: &Caller,
    reservation: Option<&crate::gateway::idempotency::Reservation>,
    valid: usize,
) -> (usize, std::time::Duration) {
    let Some(limiter) = &state.rate_limiter else {
        return (valid, std::time::Duration::ZERO);
    };
    let before = reservation
        .and_then(|r| r.granted_before)
        .unwrap_or(0)
        .min(valid);
    let (more, wait) = limiter.take_up_to(&caller.key_id, valid - before);
    if let Some(reservation) = reservation {
        reservation.record_granted(before + more);
    }
    (before + more, wait)
}

fn answer(body: Vec<u8>, record: AccessRecord) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    response.extensions_mut().insert(record);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_distinct_stable_version_7_ids() {
        let base = Uuid::now_v7();
        let ids: std::collections::HashSet<Uuid> = (0..1000).map(|i| entry_id(base, i)).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(entry_id(base, 0), base);
        assert_eq!(entry_id(base, 7), entry_id(base, 7));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
    }
}
