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
use crate::contract::Channel;
use crate::gateway::AppState;
use crate::gateway::error::ApiError;
use crate::optout::{self, OptOutUpdate};
use crate::status::StatusStore;

/// When each webhook last received a request whose signature held (Unix ms),
/// in this process: `/health` shows it, so an operator sees a provider that
/// stopped reporting.
#[derive(Debug, Default)]
pub struct LastSeen(std::sync::Mutex<std::collections::BTreeMap<&'static str, i64>>);

impl LastSeen {
    fn note(&self, source: &'static str) {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.insert(source, crate::clock::now_ms());
    }

    /// Each webhook that was seen, and when.
    pub fn view(&self) -> serde_json::Value {
        let seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter()
            .map(|(source, at)| ((*source).to_owned(), crate::clock::format_ms(*at).into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

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
    state.webhooks_seen.note(source);
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
    let mut content = content;
    for i in &mut content.inbound {
        i.tenants = owners(state, i);
    }
    let template_statuses = std::mem::take(&mut content.template_statuses);
    if !template_statuses.is_empty() {
        let changed = template_statuses.len();
        state
            .templates
            .change_status(template_statuses)
            .await
            .map_err(ApiError::StoreUnavailable)?;
        crate::metrics::webhook(webhook, "recorded", changed);
    }
    // Closed windows and consent first: a 131047 or a STOP is recorded even
    // when the statuses beside it cannot be (their retry finds it applied).
    close_windows(state, store, std::mem::take(&mut content.closed_windows)).await?;
    let opened: Vec<(String, String)> = content
        .inbound
        .iter()
        .filter_map(|i| i.window_key())
        .map(|(n, p)| (n.to_owned(), p.to_owned()))
        .collect();
    change_opt_outs(state, store, consent_changes(state, &content.inbound)).await?;
    let read: Vec<(String, String)> = content
        .inbound
        .iter()
        .filter_map(|i| {
            i.window_key()
                .map(|(n, _)| (n.to_owned(), i.provider_message_id.clone()))
        })
        .collect();
    if carried > 0 {
        if let Err(e) = store.record(content.updates, content.inbound).await {
            crate::metrics::webhook(webhook, "store-unavailable", carried);
            return Err(ApiError::StoreUnavailable(e));
        }
        crate::metrics::webhook(webhook, "recorded", carried);
        state
            .admission
            .forget_windows(opened.iter().map(|(n, p)| (n.as_str(), p.as_str())));
        if state.webhooks.whatsapp_auto_read {
            mark_read(state, &read);
        }
    }
    Ok(StatusCode::OK)
}

/// `WHATSAPP_AUTO_READ=on`: marks the recorded messages read, in the
/// background (the webhook's `200` does not wait on the Cloud API).
fn mark_read(state: &AppState, received: &[(String, String)]) {
    for (number_id, message_id) in received {
        state
            .read_receipts
            .mark_in_background(number_id, message_id);
    }
}

/// Notes the windows a 131047 report closed, then forgets them from this
/// gateway's cache.
async fn close_windows(
    state: &AppState,
    store: &Arc<dyn StatusStore>,
    closures: Vec<crate::window::Closure>,
) -> Result<(), ApiError> {
    if closures.is_empty() {
        return Ok(());
    }
    store
        .close_windows(closures.clone())
        .await
        .map_err(ApiError::StoreUnavailable)?;
    state.admission.forget_windows(
        closures
            .iter()
            .map(|c| (c.number_id.as_str(), c.person.as_str())),
    );
    Ok(())
}

/// The opt-out changes of inbound keywords, one per tenant the message
/// belongs to.
fn consent_changes(state: &AppState, inbound: &[crate::status::Inbound]) -> Vec<OptOutUpdate> {
    inbound
        .iter()
        .filter_map(|i| {
            let change =
                optout::keyword_change(i.text()?, &i.channel, &state.webhooks.opt_out_keywords)?;
            Some(i.tenants.iter().map(move |tenant| OptOutUpdate {
                tenant: tenant.clone(),
                number: i.from.clone(),
                change: change.clone(),
                source: format!("inbound-{}", i.channel),
                at_ms: i.at_ms,
                inbound_id: Some(i.provider_message_id.clone()),
            }))
        })
        .flatten()
        .collect()
}

/// Applies opt-out changes, then forgets them from this gateway's cache.
async fn change_opt_outs(
    state: &AppState,
    store: &Arc<dyn StatusStore>,
    updates: Vec<OptOutUpdate>,
) -> Result<(), ApiError> {
    if updates.is_empty() {
        return Ok(());
    }
    let changed: Vec<(String, String)> = updates
        .iter()
        .map(|u| (u.tenant.clone(), u.number.clone()))
        .collect();
    store
        .change_opt_outs(updates)
        .await
        .map_err(ApiError::StoreUnavailable)?;
    if let Some(cache) = state.admission.opt_outs() {
        for (tenant, number) in &changed {
            cache.forget(tenant, number);
        }
    }
    Ok(())
}

/// The tenants an inbound message belongs to: the receiving number's, or
/// every tenant that shares the deployment's.
fn owners(state: &AppState, inbound: &crate::status::Inbound) -> Vec<String> {
    let Some(channel) = Channel::from_name(&inbound.channel) else {
        return Vec::new();
    };
    state
        .tenants
        .owners_of(channel, inbound.to.as_deref())
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// Counts a refused webhook delivery under its problem code, and passes the result on.
fn refused<T>(source: &'static str, result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(e) = &result {
        crate::metrics::webhook(source, e.code(), 1);
    }
    result
}
