//! Delivery channels: the clients of the providers Herald sends through. A
//! channel is a client, its error taxonomy, its request shape and its pacing;
//! the delivery pipeline, the retry and dead-letter policy and the three
//! transports do not change per channel. Adding one touches this folder, the
//! message model and the configuration: nothing in `delivery/`, `consumer/`
//! or `embedded/`.

use std::sync::Arc;

use serde_json::Value;

use crate::config::{DeliveryConfig, DeliveryMode, WebhookConfig};
use crate::contract::{self, Envelope};
use crate::status::{Inbound, Update};

pub mod console;
pub mod http;
pub mod inbound;
pub mod infobip;
pub mod pacing;
pub mod provider;
pub mod unreadable;
pub mod whatsapp;

pub use console::ConsoleChannel;
pub use provider::{FailureClass, Provider, ProviderError};

/// What the console prints and answers for `envelope`: the request its
/// channel's provider would be sent (for SMS without an account's default
/// sender or webhook URL), and the id that provider would answer with —
/// `console.<id>` for WhatsApp, the envelope id for an SMS (Infobip takes
/// Herald's id as its own, so delivery reports posted by hand to
/// `/webhooks/infobip` match console deliveries too).
pub fn console_answer(envelope: &Envelope) -> (Value, String) {
    match envelope.channel {
        contract::Channel::Whatsapp => (
            whatsapp::request_body(envelope),
            format!("console.{}", envelope.id),
        ),
        contract::Channel::Sms => (
            infobip::request_body(envelope, None, None),
            envelope.id.to_string(),
        ),
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
    /// Windows a 131047 report says are closed.
    pub closed_windows: Vec<crate::window::Closure>,
    /// Templates whose status changed (`message_template_status_update`).
    pub template_statuses: Vec<crate::templates::StatusChange>,
}

/// The registry: the providers configured in this process, by the envelope
/// channel they serve. [`Channels::from_config`] is the one list of the
/// concrete providers Herald knows.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    /// Every envelope goes to the console (no provider credentials, or
    /// `DELIVERY=console`).
    console: Option<Arc<dyn Provider>>,
    /// The provider serving each channel.
    serving: Vec<(contract::Channel, Arc<dyn Provider>)>,
}

/// Why a channel's client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the {provider} client: {source}")]
pub struct ChannelBuildError {
    provider: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Channels {
    /// Builds the clients named by the configuration, once per process.
    pub fn from_config(config: &DeliveryConfig) -> Result<Self, ChannelBuildError> {
        let DeliveryMode::Providers { whatsapp, infobip } = &config.mode else {
            return Ok(Self::console());
        };
        let mut channels = Self::default();
        // One client per number: each with its token, pacer, pair limiter
        // and (in the pipeline) circuit.
        for config in whatsapp {
            let client = whatsapp::WhatsAppClient::new(config).map_err(build_error("whatsapp"))?;
            channels = channels.also_serving(contract::Channel::Whatsapp, client);
        }
        if let Some(config) = infobip {
            let client = infobip::InfobipClient::new(config).map_err(build_error("infobip"))?;
            channels = channels.serving(contract::Channel::Sms, client);
        }
        Ok(channels)
    }

    /// Everything to the console.
    pub fn console() -> Self {
        Self {
            console: Some(Arc::new(ConsoleChannel)),
            serving: Vec::new(),
        }
    }

    /// WhatsApp through `client`.
    pub fn whatsapp(client: whatsapp::WhatsAppClient) -> Self {
        Self::default().serving(contract::Channel::Whatsapp, client)
    }

    /// The providers given.
    pub fn providers(
        whatsapp: Option<whatsapp::WhatsAppClient>,
        sms: Option<infobip::InfobipClient>,
    ) -> Self {
        let mut channels = Self::default();
        if let Some(client) = whatsapp {
            channels = channels.serving(contract::Channel::Whatsapp, client);
        }
        if let Some(client) = sms {
            channels = channels.serving(contract::Channel::Sms, client);
        }
        channels
    }

    /// The same registry with `provider` serving `channel` (in place of any
    /// provider that served it).
    pub fn serving(mut self, channel: contract::Channel, provider: impl Provider) -> Self {
        self.serving.retain(|(c, _)| *c != channel);
        self.serving.push((channel, Arc::new(provider)));
        self
    }

    /// The same registry with `provider` serving `channel` beside the
    /// providers that serve it already (another sending number).
    pub fn also_serving(mut self, channel: contract::Channel, provider: impl Provider) -> Self {
        self.serving.push((channel, Arc::new(provider)));
        self
    }

    /// The provider that delivers `envelope`: its channel's, and for a
    /// WhatsApp envelope that names its number (`from`), that number's.
    /// `None` when none is configured, or the number is not one of ours.
    pub fn for_envelope(&self, envelope: &Envelope) -> Option<&Arc<dyn Provider>> {
        if let Some(console) = &self.console {
            return Some(console);
        }
        let mut serving = self
            .serving
            .iter()
            .filter(|(c, _)| *c == envelope.channel)
            .map(|(_, provider)| provider);
        match (&envelope.from, envelope.channel) {
            (Some(number), contract::Channel::Whatsapp) => {
                serving.find(|p| p.account() == number.as_str())
            }
            _ => serving.next(),
        }
    }

    /// The provider that delivers `channel`'s envelopes (its first number's
    /// for WhatsApp), if one is configured.
    pub fn for_channel(&self, channel: contract::Channel) -> Option<&Arc<dyn Provider>> {
        if let Some(console) = &self.console {
            return Some(console);
        }
        self.serving
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, provider)| provider)
    }

    /// Every configured provider.
    pub fn all(&self) -> Vec<Arc<dyn Provider>> {
        self.console
            .iter()
            .chain(self.serving.iter().map(|(_, provider)| provider))
            .cloned()
            .collect()
    }

    /// Names of the configured providers, for the startup log line.
    pub fn describe(&self) -> String {
        self.all()
            .iter()
            .map(|c| c.describe())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every provider webhook Herald knows, each off (`404`) until its
/// credentials are configured: the one list the gateway mounts and the API
/// document describes.
pub fn inbound_webhooks(config: &WebhookConfig) -> Vec<Arc<dyn inbound::InboundWebhook>> {
    let (secret, basic, header) = (
        &config.infobip_secret,
        &config.infobip_basic,
        config.infobip_signature_header.as_str(),
    );
    vec![
        Arc::new(whatsapp::webhook::WhatsAppWebhook::new(
            config.whatsapp_app_secret.clone(),
            config.whatsapp_verify_token.clone(),
        )),
        Arc::new(infobip::webhook::InfobipWebhook::reports(
            secret.clone(),
            basic.clone(),
            header,
        )),
        Arc::new(infobip::webhook::InfobipWebhook::inbound(
            secret.clone(),
            basic.clone(),
            header,
        )),
    ]
}

/// Wraps a client's build failure with the provider's name.
fn build_error(provider: &'static str) -> impl Fn(reqwest::Error) -> ChannelBuildError {
    move |e| ChannelBuildError {
        provider,
        source: Box::new(e),
    }
}
