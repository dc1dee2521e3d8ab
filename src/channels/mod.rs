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
use crate::delivery::{ChannelError, RecipientLimiter, ThroughputLimiter};
use crate::publisher::BoxFuture;

pub mod console;
pub mod whatsapp;

pub use console::ConsoleChannel;

/// One provider Herald sends through.
pub trait Channel: Send + Sync + std::fmt::Debug + 'static {
    /// The provider's name in logs, `/health` and metrics (`whatsapp`, `console`).
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
}

/// The request a channel sends for `envelope`, as JSON: what the console prints.
pub fn request_body(envelope: &Envelope) -> Value {
    match envelope.channel {
        contract::Channel::Whatsapp => whatsapp::request_body(envelope),
    }
}

/// The channels configured in this process, by the envelope channel they serve.
#[derive(Debug, Clone)]
pub struct Channels {
    /// Every envelope goes to the console (no provider credentials, or
    /// `DELIVERY=console`).
    console: Option<Arc<dyn Channel>>,
    whatsapp: Option<Arc<dyn Channel>>,
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
        match &config.mode {
            DeliveryMode::Console => Ok(Self::console()),
            DeliveryMode::WhatsApp(w) => {
                let client = whatsapp::WhatsAppClient::new(w).map_err(|e| ChannelBuildError {
                    channel: "whatsapp",
                    source: Box::new(e),
                })?;
                Ok(Self::whatsapp(client))
            }
        }
    }

    /// Everything to the console.
    pub fn console() -> Self {
        Self {
            console: Some(Arc::new(ConsoleChannel)),
            whatsapp: None,
        }
    }

    /// WhatsApp through `client`.
    pub fn whatsapp(client: whatsapp::WhatsAppClient) -> Self {
        Self {
            console: None,
            whatsapp: Some(Arc::new(client)),
        }
    }

    /// The channel that delivers `channel`'s envelopes, if one is configured.
    pub fn for_channel(&self, channel: contract::Channel) -> Option<&Arc<dyn Channel>> {
        if let Some(console) = &self.console {
            return Some(console);
        }
        match channel {
            contract::Channel::Whatsapp => self.whatsapp.as_ref(),
        }
    }

    /// Every configured channel.
    pub fn all(&self) -> Vec<Arc<dyn Channel>> {
        [&self.console, &self.whatsapp]
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
