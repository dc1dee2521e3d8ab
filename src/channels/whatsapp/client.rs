//! The HTTP client for the Cloud API's send endpoint.

use std::time::Duration;

use super::error::WhatsAppError;
use super::types::{GraphErrorBody, SendResponse, request_body};
use crate::channels::http::{Answer, Unanswered, call, provider_http_client};
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
    /// `/{version}/{phone-number-id}/media`: uploads.
    media_url: String,
    /// `/{version}`: media ids are read under it.
    graph_url: String,
    token: Secret,
    timeout: Duration,
    pacer: ThroughputLimiter,
    /// `WHATSAPP_PAIR_RATE` per 6 s to one recipient; `None` when 0 (off).
    pairs: Option<RecipientLimiter>,
    /// What start-up logs say it is.
    description: String,
    /// The phone number id (the fleet's key for its limits).
    phone_number_id: String,
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
            media_url: format!(
                "{}/{}/{}/media",
                config.base_url, config.api_version, config.phone_number_id
            ),
            graph_url: format!("{}/{}", config.base_url, config.api_version),
            token: config.access_token.clone(),
            timeout: config.request_timeout,
            pacer: ThroughputLimiter::new(config.max_mps),
            pairs: (config.pair_rate > 0)
                .then(|| RecipientLimiter::new(config.pair_rate, PAIR_WINDOW)),
            description: format!(
                "whatsapp (phone number id {}, {})",
                config.phone_number_id, config.api_version
            ),
            phone_number_id: config.phone_number_id.clone(),
        })
    }

    /// The per-call timeout (`WHATSAPP_TIMEOUT_MS`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one envelope's message. Every failure is mapped to a [`WhatsAppError`].
    pub async fn send(&self, envelope: &Envelope) -> Result<SendResponse, WhatsAppError> {
        let request = self
            .http
            .post(&self.messages_url)
            .bearer_auth(self.token.expose())
            .json(&request_body(envelope));
        let answer = call(request, &UNANSWERED).await?;
        if answer.is_success() {
            return match serde_json::from_slice::<SendResponse>(answer.body()) {
                Ok(r) if !r.messages.is_empty() => Ok(r),
                _ => Err(unexpected(&answer)),
            };
        }
        Err(refused(&answer))
    }

    /// Marks the message `message_id` this number received as read (with
    /// the typing indicator when `typing`).
    pub async fn mark_read(&self, message_id: &str, typing: bool) -> Result<(), WhatsAppError> {
        let mut body = serde_json::json!({
            "messaging_product": "whatsapp", "status": "read", "message_id": message_id,
        });
        if typing {
            body["typing_indicator"] = serde_json::json!({"type": "text"});
        }
        let request = self
            .http
            .post(&self.messages_url)
            .bearer_auth(self.token.expose())
            .json(&body);
        let answer = call(request, &UNANSWERED).await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(refused(&answer))
        }
    }
}

/// How long one upload may take (a 100 MB document on a slow link).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

impl WhatsAppClient {
    /// Uploads kept media to this number (`POST /{phone-number-id}/media`,
    /// multipart: `messaging_product`, `type`, `file`), streamed from where
    /// it is kept; the Cloud API's media id.
    pub async fn upload(
        &self,
        info: &crate::media::MediaInfo,
        body: crate::media::MediaBody,
    ) -> Result<String, WhatsAppError> {
        let part = reqwest::multipart::Part::stream_with_length(
            reqwest::Body::wrap_stream(body),
            info.size,
        )
        .file_name(
            info.filename
                .clone()
                .unwrap_or_else(|| info.media_id.clone()),
        )
        .mime_str(&info.mime_type)
        .map_err(WhatsAppError::Connect)?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", info.mime_type.clone())
            .part("file", part);
        let request = self
            .http
            .post(&self.media_url)
            .bearer_auth(self.token.expose())
            .timeout(UPLOAD_TIMEOUT)
            .multipart(form);
        let answer = call(request, &UNANSWERED).await?;
        if !answer.is_success() {
            return Err(refused(&answer));
        }
        #[derive(serde::Deserialize)]
        struct Uploaded {
            id: String,
        }
        serde_json::from_slice::<Uploaded>(answer.body())
            .map(|u| u.id)
            .map_err(|_| unexpected(&answer))
    }
}

/// Media a person sent, as its download begins.
pub struct Download {
    /// Its type, as Meta gives it.
    pub mime_type: String,
    /// The bytes, as they arrive.
    pub body: reqwest::Response,
}

impl WhatsAppClient {
    /// Starts downloading media a person sent: `GET /{media-id}` for its
    /// URL (valid 5 minutes), then that URL, both with this number's token.
    pub async fn download(&self, media_id: &str) -> Result<Download, WhatsAppError> {
        #[derive(serde::Deserialize)]
        struct Located {
            url: String,
            mime_type: String,
        }
        let request = self
            .http
            .get(format!("{}/{media_id}", self.graph_url))
            .bearer_auth(self.token.expose());
        let answer = call(request, &UNANSWERED).await?;
        if !answer.is_success() {
            return Err(refused(&answer));
        }
        let located: Located =
            serde_json::from_slice(answer.body()).map_err(|_| unexpected(&answer))?;
        let body = self
            .http
            .get(&located.url)
            .bearer_auth(self.token.expose())
            .timeout(UPLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| UNANSWERED.sent_or_not(e))?;
        if !body.status().is_success() {
            return Err(WhatsAppError::Unexpected {
                status: body.status().as_u16(),
                body: String::new(),
                retry_after: None,
            });
        }
        Ok(Download {
            mime_type: located.mime_type,
            body,
        })
    }
}

/// A Graph API refusal: Meta's error object, or an undocumented answer.
pub(super) fn refused(answer: &Answer<impl AsRef<[u8]>>) -> WhatsAppError {
    match serde_json::from_slice::<GraphErrorBody>(answer.body()) {
        Ok(body) => WhatsAppError::Api {
            status: answer.status,
            error: body.error,
            retry_after: answer.retry_after,
        },
        Err(_) => unexpected(answer),
    }
}

impl Provider for WhatsAppClient {
    fn describe(&self) -> String {
        self.description.clone()
    }

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

    fn account(&self) -> &str {
        &self.phone_number_id
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

    fn upload<'a>(
        &'a self,
        info: &'a crate::media::MediaInfo,
        body: crate::media::MediaBody,
    ) -> Option<BoxFuture<'a, Result<String, ProviderError>>> {
        Some(Box::pin(async move {
            Ok(WhatsAppClient::upload(self, info, body).await?)
        }))
    }

    fn download<'a>(
        &'a self,
        media_id: &'a str,
    ) -> Option<BoxFuture<'a, Result<(String, crate::media::MediaBody), ProviderError>>> {
        Some(Box::pin(async move {
            let download = WhatsAppClient::download(self, media_id).await?;
            Ok((
                download.mime_type,
                crate::media::inbound::body_of(download.body),
            ))
        }))
    }

    fn media_gone(&self, code: i64) -> bool {
        // Graph's "invalid parameter" for an id it no longer has, and
        // "media upload error" (Meta could not fetch the media).
        matches!(code, 100 | 131_053)
    }

    fn knows_code(&self, code: i64) -> bool {
        super::error::is_documented(code)
    }
}

/// The window of WhatsApp's pair rate limit (error 131056).
const PAIR_WINDOW: Duration = Duration::from_secs(6);

/// A call to the Cloud API that got no answer: before anything was sent (a
/// connection that could not be made: safe to retry) or after (Meta may have
/// the message).
pub(super) const UNANSWERED: Unanswered<WhatsAppError> = Unanswered {
    connect: WhatsAppError::Connect,
    timeout: || WhatsAppError::Timeout,
    interrupted: WhatsAppError::Interrupted,
};

/// An answer the Cloud API does not document.
fn unexpected(answer: &Answer<impl AsRef<[u8]>>) -> WhatsAppError {
    WhatsAppError::Unexpected {
        status: answer.status,
        body: answer.body_for_log(),
        retry_after: answer.retry_after,
    }
}
