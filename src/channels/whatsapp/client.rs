//! The HTTP client for the Cloud API's send endpoint.

use std::time::Duration;

use super::error::WhatsAppError;
use super::types::{GraphErrorBody, SendResponse, request_body};
use crate::channels::http::{provider_http_client, response_retry_after, truncate_body};
use crate::channels::pacing::{RecipientLimiter, ThroughputLimiter};
use crate::channels::provider::Provider;
use crate::channels::provider::ProviderError;
use crate::config::{Secret, WhatsAppConfig};
use crate::contract::Envelope;
use futures_util::future::BoxFuture;

/// One connection-pooled client for one sending number, built once per
/// process, with the pacer that keeps that number under `WHATSAPP_MAX_MPS`.
pub struct WhatsAppClient {
    http: reqwest::Client,
    messages_url: String,
    token: Secret,
    timeout: Duration,
    pacer: ThroughputLimiter,
    /// `WHATSAPP_PAIR_RATE` per 6 s to one recipient; `None` when 0 (off).
    pairs: Option<RecipientLimiter>,
}

impl std::fmt::Debug for WhatsAppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppClient")
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

impl WhatsAppClient {
    /// Builds the client. Fails only if the TLS backend cannot initialise.
    pub fn new(config: &WhatsAppConfig) -> Result<Self, reqwest::Error> {
        let http = provider_http_client(config.request_timeout)?;
        Ok(Self {
            http,
            messages_url: format!(
                "{}/{}/{}/messages",
                config.base_url, config.api_version, config.phone_number_id
            ),
            token: config.access_token.clone(),
            timeout: config.request_timeout,
            pacer: ThroughputLimiter::new(config.max_mps),
            pairs: (config.pair_rate > 0)
                .then(|| RecipientLimiter::new(config.pair_rate, PAIR_WINDOW)),
        })
    }

    /// The per-call timeout (`WHATSAPP_TIMEOUT_MS`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one envelope's message. Every failure is mapped to a [`WhatsAppError`].
    pub async fn send(&self, envelope: &Envelope) -> Result<SendResponse, WhatsAppError> {
        let response = self
            .http
            .post(&self.messages_url)
            .bearer_auth(self.token.expose())
            .json(&request_body(envelope))
            .send()
            .await
            .map_err(sent_or_not)?;
        let status = response.status().as_u16();
        let retry_after = response_retry_after(response.headers());
        let bytes = response.bytes().await.map_err(sent_or_not)?;
        if (200..300).contains(&status) {
            return match serde_json::from_slice::<SendResponse>(&bytes) {
                Ok(r) if !r.messages.is_empty() => Ok(r),
                _ => Err(WhatsAppError::Unexpected {
                    status,
                    body: truncate_body(&bytes),
                    retry_after,
                }),
            };
        }
        match serde_json::from_slice::<GraphErrorBody>(&bytes) {
            Ok(body) => Err(WhatsAppError::Api {
                status,
                error: body.error,
                retry_after,
            }),
            Err(_) => Err(WhatsAppError::Unexpected {
                status,
                body: truncate_body(&bytes),
                retry_after,
            }),
        }
    }
}

impl Provider for WhatsAppClient {
    fn name(&self) -> &'static str {
        "whatsapp"
    }

    fn send<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let response = WhatsAppClient::send(self, envelope).await?;
            // `send` only returns Ok with at least one message id.
            Ok(response
                .messages
                .into_iter()
                .next()
                .map(|m| m.id)
                .unwrap_or_default())
        })
    }

    fn pacer(&self) -> Option<&ThroughputLimiter> {
        Some(&self.pacer)
    }

    fn call_timeout(&self) -> Duration {
        self.timeout
    }

    fn recipient_limiter(&self) -> Option<&RecipientLimiter> {
        self.pairs.as_ref()
    }

    fn cannot_reach(&self, code: i64) -> bool {
        super::error::unreachable_on_whatsapp(code)
    }

    fn knows_code(&self, code: i64) -> bool {
        super::error::is_documented(code)
    }
}

/// The window of WhatsApp's pair rate limit (error 131056).
const PAIR_WINDOW: Duration = Duration::from_secs(6);

/// Whether a transport error happened before anything was sent (a connection
/// that could not be made: safe to retry) or after (Meta may have the message).
fn sent_or_not(e: reqwest::Error) -> WhatsAppError {
    if e.is_connect() {
        WhatsAppError::Connect(e)
    } else if e.is_timeout() {
        WhatsAppError::Timeout
    } else {
        WhatsAppError::Interrupted(e)
    }
}
