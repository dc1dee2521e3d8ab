//! The HTTP client for `POST /sms/3/messages`.

use std::time::Duration;

use super::error::{InfobipError, group};
use super::types::{ApiErrorBody, SendResponse, request_body};
use crate::channels::http::{Answer, Unanswered, call, provider_http_client};
use crate::channels::pacing::ThroughputLimiter;
use crate::channels::provider::Provider;
use crate::channels::provider::ProviderError;
use crate::config::{InfobipConfig, Secret};
use crate::contract::Envelope;
use futures_util::future::BoxFuture;

/// One connection-pooled client for one Infobip account, built once per
/// process, with the pacer that keeps it under `SMS_MAX_MPS`.
pub struct InfobipClient {
    http: reqwest::Client,
    send_url: String,
    authorization: Secret,
    default_sender: Option<String>,
    public_base_url: Option<String>,
    timeout: Duration,
    pacer: ThroughputLimiter,
    /// What start-up logs say it is.
    description: String,
    /// The account's base URL (the fleet's key for its limits).
    base_url: String,
}

impl std::fmt::Debug for InfobipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfobipClient")
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

impl InfobipClient {
    /// Builds the client. Fails only if the TLS backend cannot initialise.
    pub fn new(config: &InfobipConfig) -> Result<Self, reqwest::Error> {
        let http = provider_http_client(config.request_timeout)?;
        Ok(Self {
            http,
            send_url: format!("{}/sms/3/messages", config.base_url),
            authorization: Secret::new(format!("App {}", config.api_key.expose())),
            default_sender: config.sender.clone(),
            public_base_url: config.public_base_url.clone(),
            timeout: config.request_timeout,
            pacer: ThroughputLimiter::new(config.max_mps),
            description: format!(
                "sms via Infobip ({}, delivery reports {})",
                config.base_url,
                if config.public_base_url.is_some() {
                    "on"
                } else {
                    "off: PUBLIC_BASE_URL is unset"
                }
            ),
            base_url: config.base_url.clone(),
        })
    }

    /// The request this client sends for `envelope` (what the console prints).
    pub fn request_body(&self, envelope: &Envelope) -> serde_json::Value {
        request_body(
            envelope,
            self.default_sender.as_deref(),
            self.public_base_url.as_deref(),
        )
    }

    /// Sends one envelope; `Ok` is the message id Infobip took it under.
    pub async fn send(&self, envelope: &Envelope) -> Result<String, InfobipError> {
        let request = self
            .http
            .post(&self.send_url)
            .header(reqwest::header::AUTHORIZATION, self.authorization.expose())
            .json(&self.request_body(envelope));
        let answer = call(request, &UNANSWERED).await?;
        if answer.is_success() {
            let first = serde_json::from_slice::<SendResponse>(answer.body())
                .ok()
                .and_then(|r| r.messages.into_iter().next());
            return match first {
                Some(m) if matches!(m.status.group_id, group::PENDING | group::DELIVERED) => {
                    Ok(m.message_id.unwrap_or_else(|| envelope.id.to_string()))
                }
                Some(m)
                    if matches!(
                        m.status.group_id,
                        group::REJECTED | group::UNDELIVERABLE | group::EXPIRED
                    ) =>
                {
                    Err(InfobipError::Refused(m.status))
                }
                _ => Err(unexpected(&answer)),
            };
        }
        match serde_json::from_slice::<ApiErrorBody>(answer.body()) {
            Ok(body) if body.error_code.is_some() || body.request_error.is_some() => {
                Err(InfobipError::Api {
                    status: answer.status,
                    body,
                    retry_after: answer.retry_after,
                })
            }
            _ => Err(unexpected(&answer)),
        }
    }
}

impl Provider for InfobipClient {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn name(&self) -> &'static str {
        "infobip"
    }

    fn send<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move { Ok(InfobipClient::send(self, envelope).await?) })
    }

    fn pacer(&self) -> Option<&ThroughputLimiter> {
        Some(&self.pacer)
    }

    fn account(&self) -> &str {
        &self.base_url
    }

    fn call_timeout(&self) -> Duration {
        self.timeout
    }

    fn knows_code(&self, code: i64) -> bool {
        // Infobip's status and error ids: a registry of a few hundred.
        (0..1000).contains(&code)
    }
}

/// A call to Infobip that got no answer: before anything was sent (safe to
/// retry) or after (Infobip may have the message).
const UNANSWERED: Unanswered<InfobipError> = Unanswered {
    connect: InfobipError::Connect,
    timeout: || InfobipError::Timeout,
    interrupted: InfobipError::Interrupted,
};

/// An answer Infobip's API does not document.
fn unexpected(answer: &Answer<impl AsRef<[u8]>>) -> InfobipError {
    InfobipError::Unexpected {
        status: answer.status,
        body: answer.body_for_log(),
        retry_after: answer.retry_after,
    }
}
