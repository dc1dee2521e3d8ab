//! The providers' webhooks: no API key; each checks its own signature over
//! the raw bytes before anything is parsed, and answers `200` only once what
//! it carries is recorded (so the provider retries otherwise).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::channels::WebhookContent;
use crate::channels::inbound::{InboundWebhook, Refusal};
use crate::gateway::AppState;
use crate::gateway::error::ApiError;
use crate::optout::{self, OptOutUpdate};
use crate::status::StatusStore;

/// `POST` to a provider's webhook (the registry's
/// [`inbound_webhooks`](crate::channels::inbound_webhooks)): refused before a
/// byte of the body is read when the route is off (`404`) or the headers
/// carry no credentials (`401`) or wrong ones (`403`); then the body is read
/// within the webhook budget, its signature checked, read and recorded.
pub async fn receive(
    state: AppState,
    webhook: Arc<dyn InboundWebhook>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let source = webhook.route().source;
    let (true, Some(store)) = (webhook.is_configured(), &state.statuses) else {
        return Err(ApiError::NotFound);
    };
    let proof = refused(source, webhook.check_headers(&headers).map_err(refusal))?;
    let (body, _reserved) = state.webhook_bodies.read(&headers, body).await?;
    refused(source, webhook.check_body(&proof, &body).map_err(refusal))?;
    let content = refused(
        source,
        webhook
            .read(&body)
            .map_err(|e| ApiError::MalformedJson(e.to_string())),
    )?;
    record(&state, store, source, content).await
}

/// `GET` to a webhook with a subscription handshake (Meta's): the challenge
/// back as text, `403` when the handshake is wrong, `404` when it is off.
pub async fn handshake(
    webhook: Arc<dyn InboundWebhook>,
    query: HashMap<String, String>,
) -> Result<Response, ApiError> {
    let challenge = webhook.handshake(&query).map_err(refusal)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        challenge,
    )
        .into_response())
}

/// A webhook's refusal as the problem the client gets.
fn refusal(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotConfigured => ApiError::NotFound,
        Refusal::Missing(expected) => ApiError::SignatureMissing(expected),
        Refusal::Invalid => ApiError::SignatureInvalid,
    }
}

/// Records what a webhook carried: the opt-out changes of inbound keywords,
/// then statuses and inbound messages (with their events). `200` only once
/// both are recorded; a failure is a `503`, so the provider sends it again
/// (every step is idempotent).
async fn record(
    state: &AppState,
    store: &Arc<dyn StatusStore>,
    webhook: &'static str,
    content: WebhookContent,
) -> Result<StatusCode, ApiError> {
    for error in &content.errors {
        tracing::warn!(webhook, error = %error, "the provider reported an error in a webhook");
    }
    crate::metrics::webhook(webhook, "skipped", content.skipped);
    let carried = content.updates.len() + content.inbound.len();
    if content.skipped > 0 {
        tracing::info!(
            webhook,
            skipped = content.skipped,
            "reports or messages Herald does not track were skipped"
        );
    }
    let opt_outs: Vec<OptOutUpdate> = content
        .inbound
        .iter()
        .filter_map(|i| {
            let change =
                optout::keyword_change(i.text()?, &i.channel, &state.webhooks.opt_out_keywords)?;
            Some(OptOutUpdate {
                number: i.from.clone(),
                change,
                source: format!("inbound-{}", i.channel),
                at_ms: i.at_ms,
                inbound_id: Some(i.provider_message_id.clone()),
            })
        })
        .collect();
    // Consent first: a STOP is recorded even when the statuses or events
    // beside it cannot be (their retry finds it applied and changes nothing).
    if !opt_outs.is_empty() {
        let numbers: Vec<String> = opt_outs.iter().map(|u| u.number.clone()).collect();
        store
            .change_opt_outs(opt_outs)
            .await
            .map_err(ApiError::StoreUnavailable)?;
        if let Some(cache) = state.admission.opt_outs() {
            for n in &numbers {
                cache.forget(n);
            }
        }
    }
    if carried > 0 {
        if let Err(e) = store.record(content.updates, content.inbound).await {
            crate::metrics::webhook(webhook, "store-unavailable", carried);
            return Err(ApiError::StoreUnavailable(e));
        }
        crate::metrics::webhook(webhook, "recorded", carried);
    }
    Ok(StatusCode::OK)
}

/// Counts a refused webhook delivery under its problem code, and passes the result on.
fn refused<T>(source: &'static str, result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(e) = &result {
        crate::metrics::webhook(source, e.code(), 1);
    }
    result
}
