//! The providers' webhooks: no API key; each checks its own signature over
//! the raw bytes before anything is parsed, and answers `200` only once what
//! it carries is recorded (so the provider retries otherwise).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use std::sync::Arc;

use crate::channels::WebhookContent;
use crate::channels::infobip::webhook as infobip_webhook;
use crate::channels::unreadable::UnreadableWebhook;
use crate::channels::whatsapp::webhook;
use crate::gateway::AppState;
use crate::gateway::error::ApiError;
use crate::optout::{self, OptOutUpdate};
use crate::status::StatusStore;

/// `GET /webhooks/whatsapp`: Meta's subscription handshake. The raw
/// `hub.challenge` comes back as text when the mode is `subscribe` and the
/// token is `WHATSAPP_VERIFY_TOKEN`; anything else is `403`.
#[utoipa::path(get, operation_id = "verifyWhatsAppWebhook", path = "/webhooks/whatsapp", tag = "webhooks",
    params(("hub.mode" = Option<String>, Query), ("hub.verify_token" = Option<String>, Query), ("hub.challenge" = Option<String>, Query)),
    responses(
        (status = 200, description = "The challenge, as text", content_type = "text/plain", body = String),
        (status = 403, description = "Wrong mode or token", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "WHATSAPP_VERIFY_TOKEN is not set", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(post, operation_id = "receiveWhatsAppWebhook", path = "/webhooks/whatsapp", tag = "webhooks",
    params(("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC-SHA256 of the body with WHATSAPP_APP_SECRET>")),
    request_body(content = crate::gateway::openapi::ProviderWebhook, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "Not a JSON object", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Not signed", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Wrongly signed", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "This webhook's secret is not configured", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within 5 s of its reservation", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Over WEBHOOK_MAX_BODY_BYTES", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "Not recorded, or webhook bodies hold all of WEBHOOK_BODIES_MAX_BYTES: the provider should retry", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn whatsapp_receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    // Refused before a byte of the body is read: a disabled route, a request
    // without its signature.
    let (Some(secret), Some(store)) = (&state.webhooks.whatsapp_app_secret, &state.statuses) else {
        return Err(ApiError::NotFound);
    };
    let signature = refused(
        "whatsapp",
        headers
            .get(webhook::SIGNATURE_HEADER)
            .ok_or_else(|| ApiError::SignatureMissing("X-Hub-Signature-256".into())),
    )?
    .to_str()
    .map_err(|_| ApiError::SignatureInvalid)?;
    let (body, _reserved) = state.webhook_bodies.read(&headers, body).await?;
    if !webhook::signature_matches(secret.expose().as_bytes(), &body, signature) {
        return refused("whatsapp", Err(ApiError::SignatureInvalid));
    }
    let content = refused(
        "whatsapp",
        webhook::read(&body).map_err(|e| ApiError::MalformedJson(e.to_string())),
    )?;
    record(&state, store, "whatsapp", content).await
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

/// How an Infobip webhook authenticated itself, as far as it can be checked
/// before the body is read.
enum InfobipAuth<'a> {
    /// A signature, to check over the body.
    Signature(&'a str),
    /// HTTP Basic, already checked.
    Basic,
}

/// Checks an Infobip webhook's authentication before its body is read: the
/// hex HMAC-SHA256 in `INFOBIP_SIGNATURE_HEADER` with
/// `INFOBIP_WEBHOOK_SECRET` (checked over the body by [`infobip_verified`]),
/// or HTTP Basic with `INFOBIP_WEBHOOK_BASIC`, whichever is configured and
/// sent. Neither configured: the route does not exist (`404`); nothing sent:
/// `401`; wrong: `403`.
fn infobip_credentials<'a>(
    state: &AppState,
    headers: &'a HeaderMap,
) -> Result<InfobipAuth<'a>, ApiError> {
    let config = &state.webhooks;
    if config.infobip_secret.is_none() && config.infobip_basic.is_none() {
        return Err(ApiError::NotFound);
    }
    if config.infobip_secret.is_some()
        && let Some(signature) = headers.get(config.infobip_signature_header.as_str())
    {
        let signature = signature.to_str().map_err(|_| ApiError::SignatureInvalid)?;
        return Ok(InfobipAuth::Signature(signature));
    }
    if let Some(basic) = &config.infobip_basic
        && let Some(authorization) = headers.get(header::AUTHORIZATION)
    {
        use base64::Engine;
        let sent = authorization
            .to_str()
            .ok()
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .unwrap_or_default();
        let matches: bool = sent.ct_eq(basic.expose().as_bytes()).into();
        return if matches {
            Ok(InfobipAuth::Basic)
        } else {
            Err(ApiError::SignatureInvalid)
        };
    }
    Err(ApiError::SignatureMissing(
        match (&config.infobip_secret, &config.infobip_basic) {
            (Some(_), None) => config.infobip_signature_header.clone(),
            (None, _) => "Authorization (Basic)".into(),
            (Some(_), Some(_)) => format!(
                "{} or Authorization (Basic)",
                config.infobip_signature_header
            ),
        },
    ))
}

/// Completes [`infobip_credentials`] once the body is read: a signature
/// must match it.
fn infobip_verified(state: &AppState, auth: &InfobipAuth<'_>, body: &[u8]) -> Result<(), ApiError> {
    match (auth, &state.webhooks.infobip_secret) {
        (InfobipAuth::Basic, _) => Ok(()),
        (InfobipAuth::Signature(signature), Some(secret))
            if infobip_webhook::signature_matches(secret.expose().as_bytes(), body, signature) =>
        {
            Ok(())
        }
        (InfobipAuth::Signature(_), _) => Err(ApiError::SignatureInvalid),
    }
}

/// `POST /webhooks/infobip`: delivery reports, each merged into the status
/// of the message whose id is its `messageId` (Herald's id, sent as
/// Infobip's). Reports for ids Herald has not recorded are kept until the
/// send is recorded, like WhatsApp's.
#[utoipa::path(post, operation_id = "receiveInfobipReports", path = "/webhooks/infobip", tag = "webhooks",
    params(("X-Infobip-Signature" = Option<String>, Header, description = "Hex HMAC-SHA256 of the body with INFOBIP_WEBHOOK_SECRET (or HTTP Basic)")),
    request_body(content = crate::gateway::openapi::ProviderWebhook, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "Not a JSON object", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Not signed", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Wrongly signed", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "This webhook's secret is not configured", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within 5 s of its reservation", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Over WEBHOOK_MAX_BODY_BYTES", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "Not recorded, or webhook bodies hold all of WEBHOOK_BODIES_MAX_BYTES: the provider should retry", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn infobip_reports(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    infobip(
        &state,
        &headers,
        body,
        "infobip",
        infobip_webhook::read_reports,
    )
    .await
}

/// `POST /webhooks/infobip/inbound`: inbound SMS, as `message.inbound`
/// events (channel `sms`), and opt-out keywords.
#[utoipa::path(post, operation_id = "receiveInfobipInbound", path = "/webhooks/infobip/inbound", tag = "webhooks",
    params(("X-Infobip-Signature" = Option<String>, Header, description = "Hex HMAC-SHA256 of the body with INFOBIP_WEBHOOK_SECRET (or HTTP Basic)")),
    request_body(content = crate::gateway::openapi::ProviderWebhook, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded"),
        (status = 400, description = "Not a JSON object", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Not signed", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Wrongly signed", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "This webhook's secret is not configured", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within 5 s of its reservation", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Over WEBHOOK_MAX_BODY_BYTES", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "Not recorded, or webhook bodies hold all of WEBHOOK_BODIES_MAX_BYTES: the provider should retry", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn infobip_inbound(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    infobip(
        &state,
        &headers,
        body,
        "infobip-inbound",
        infobip_webhook::read_inbound,
    )
    .await
}

/// Both Infobip webhooks: authenticated as far as possible before the body
/// is read, then read within the budget, verified, parsed by `read` and
/// recorded.
async fn infobip(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    source: &'static str,
    read: fn(&[u8]) -> Result<WebhookContent, UnreadableWebhook>,
) -> Result<StatusCode, ApiError> {
    let auth = refused(source, infobip_credentials(state, headers))?;
    let store = state.statuses.as_ref().ok_or(ApiError::NotFound)?;
    let (body, _reserved) = state.webhook_bodies.read(headers, body).await?;
    refused(source, infobip_verified(state, &auth, &body))?;
    let content = refused(
        source,
        read(&body).map_err(|e| ApiError::MalformedJson(e.to_string())),
    )?;
    record(state, store, source, content).await
}
