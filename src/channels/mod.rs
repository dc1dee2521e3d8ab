//! Delivery channels: the clients of the providers Herald sends through. A
//! channel is a client, its error taxonomy, its request shape and its pacing;
//! the delivery pipeline, the retry and dead-letter policy and the three
//! transports do not change per channel. Adding one touches this folder, the
//! message model and the configuration: nothing in `delivery/`, `consumer/`
//! or `embedded/`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{DeliveryConfig, DeliveryMode};
use crate::contract::{self, Envelope};
use crate::delivery::decision::ChannelError;
use crate::delivery::pacing::{RecipientLimiter, ThroughputLimiter};
use crate::status::{Inbound, Update};
use futures_util::future::BoxFuture;

pub mod console;
pub mod infobip;
pub mod whatsapp;

pub use console::ConsoleChannel;

/// One provider Herald sends through.
pub trait Channel: Send + Sync + std::fmt::Debug + 'static {
    /// The provider's name in logs and `/health` (`whatsapp`, `infobip`, `console`).
    fn name(&self) -> &'static str;

    /// Sends one envelope; `Ok` is the provider's message id.
    fn send<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, ChannelError>>;

    /// The client-side pacer that keeps this provider under its rate, or
    /// `None` when it needs none (the console).
    fn pacer(&self) -> Option<&ThroughputLimiter>;

    /// The longest one call can take (its timeout).
    fn call_timeout(&self) -> Duration;

    /// The per-recipient limit this provider enforces (WhatsApp's pair rate),
    /// if any.
    fn recipient_limiter(&self) -> Option<&RecipientLimiter> {
        None
    }

    /// True when a permanent failure with this provider code means the
    /// person cannot be reached on this channel now, so a message with a
    /// `fallback` goes by it (WhatsApp's "cannot reach" codes).
    fn cannot_reach(&self, _code: i64) -> bool {
        false
    }

    /// True for the provider error codes this channel documents: the ones a
    /// metric may carry as a label (others are `other`).
    fn knows_code(&self, _code: i64) -> bool {
        false
    }
}

/// The request a channel sends for `envelope`, as JSON: what the console
/// prints (for SMS without an account's default sender or webhook URL).
pub fn request_body(envelope: &Envelope) -> Value {
    match envelope.channel {
        contract::Channel::Whatsapp => whatsapp::request_body(envelope),
        contract::Channel::Sms => infobip::request_body(envelope, None, None),
    }
}

/// What one provider webhook delivery carries.
#[derive(Debug, Default, PartialEq)]
pub struct WebhookContent {
    /// Status reports, keyed by the provider's message id.
    pub updates: Vec<Update>,
    /// Inbound messages.
    pub inbound: Vec<Inbound>,
    /// Account- or app-level errors the provider reported (Meta's `value.errors[]`): logged.
    pub errors: Vec<Value>,
    /// Statuses or messages skipped: an unknown status, a missing id.
    pub skipped: usize,
}

/// The connection-pooled HTTP client every provider client is built on:
/// `timeout` per call, at most 3 s to connect, idle connections kept a
/// minute, Herald's user agent. Fails only if the TLS backend cannot start.
pub(crate) fn provider_http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3).min(timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A response's `Retry-After` in seconds (providers do not send the HTTP-date
/// form), capped at an hour.
pub(crate) fn response_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// A response body for an error message: cut to 1 KiB, with every run of
/// six or more digits masked, since providers echo the recipient's number
/// and these texts reach logs, dead letters and status errors.
pub(crate) fn truncate_body(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]);
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 6 {
            out.push_str("******");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_bodies_lose_their_phone_numbers() {
        let body = br#"{"destination":"41793026727","status":{"groupId":9,"id":26}}"#;
        assert_eq!(
            super::truncate_body(body),
            r#"{"destination":"******","status":{"groupId":9,"id":26}}"#
        );
    }
}

/// The channels configured in this process, by the envelope channel they serve.
#[derive(Debug, Clone)]
pub struct Channels {
    /// Every envelope goes to the console (no provider credentials, or
    /// `DELIVERY=console`).
    console: Option<Arc<dyn Channel>>,
    whatsapp: Option<Arc<dyn Channel>>,
    sms: Option<Arc<dyn Channel>>,
}

/// Why a channel's client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the {channel} client: {source}")]
pub struct ChannelBuildError {
    channel: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Channels {
    /// Builds the clients named by the configuration, once per process.
    pub fn from_config(config: &DeliveryConfig) -> Result<Self, ChannelBuildError> {
        let build_error = |channel: &'static str| {
            move |e: reqwest::Error| ChannelBuildError {
                channel,
                source: Box::new(e),
            }
        };
        match &config.mode {
            DeliveryMode::Console => Ok(Self::console()),
            DeliveryMode::Providers { whatsapp, infobip } => Ok(Self::providers(
                whatsapp
                    .as_ref()
                    .map(|w| whatsapp::WhatsAppClient::new(w))
                    .transpose()
                    .map_err(build_error("whatsapp"))?,
                infobip
                    .as_ref()
                    .map(|i| infobip::InfobipClient::new(i))
                    .transpose()
                    .map_err(build_error("infobip"))?,
            )),
        }
    }

    /// Everything to the console.
    pub fn console() -> Self {
        Self {
            console: Some(Arc::new(ConsoleChannel)),
            whatsapp: None,
            sms: None,
        }
    }

    /// WhatsApp through `client`.
    pub fn whatsapp(client: whatsapp::WhatsAppClient) -> Self {
        Self::providers(Some(client), None)
    }

    /// The providers given.
    pub fn providers(
        whatsapp: Option<whatsapp::WhatsAppClient>,
        sms: Option<infobip::InfobipClient>,
    ) -> Self {
        Self {
            console: None,
            whatsapp: whatsapp.map(|c| Arc::new(c) as Arc<dyn Channel>),
            sms: sms.map(|c| Arc::new(c) as Arc<dyn Channel>),
        }
    }

    /// The channel that delivers `channel`'s envelopes, if one is configured.
    pub fn for_channel(&self, channel: contract::Channel) -> Option<&Arc<dyn Channel>> {
        if let Some(console) = &self.console {
            return Some(console);
        }
        match channel {
            contract::Channel::Whatsapp => self.whatsapp.as_ref(),
            contract::Channel::Sms => self.sms.as_ref(),
        }
    }

    /// Every configured channel.
    pub fn all(&self) -> Vec<Arc<dyn Channel>> {
        [&self.console, &self.whatsapp, &self.sms]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Names of the configured channels, for the startup log line.
    pub fn describe(&self) -> String {
        self.all()
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}
