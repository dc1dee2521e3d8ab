//! Read receipts: a received message is marked read from the number that
//! received it, with that number's token (`POST /{number}/messages` with
//! `"status": "read"`). One client per configured number, built once.

use std::collections::HashMap;

use super::client::WhatsAppClient;
use super::error::WhatsAppError;
use crate::config::{DeliveryConfig, DeliveryMode};

/// The numbers this process can mark messages read from.
#[derive(Debug, Default)]
pub struct ReadReceipts {
    clients: HashMap<String, WhatsAppClient>,
}

/// Why a message could not be marked read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No token for the number that received it here.
    #[error("no WhatsApp credentials for the number that received the message")]
    NoCredentials,
    /// The Cloud API refused or did not answer.
    #[error("the Cloud API did not mark the message read: {0}")]
    Provider(#[from] Box<WhatsAppError>),
}

impl ReadReceipts {
    /// A client per WhatsApp number the configuration names (none on the
    /// console). Fails only if the TLS backend cannot initialise.
    pub fn from_config(config: &DeliveryConfig) -> Result<Self, reqwest::Error> {
        let DeliveryMode::Providers { whatsapp, .. } = &config.mode else {
            return Ok(Self::default());
        };
        let clients = whatsapp
            .iter()
            .map(|c| Ok((c.phone_number_id.clone(), WhatsAppClient::new(c)?)))
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(Self { clients })
    }

    /// Marks `message_id`, received by `number_id`, read.
    pub async fn mark(
        &self,
        number_id: &str,
        message_id: &str,
        typing: bool,
    ) -> Result<(), ReadError> {
        let client = self
            .clients
            .get(number_id)
            .ok_or(ReadError::NoCredentials)?;
        client
            .mark_read(message_id, typing)
            .await
            .map_err(|e| ReadError::Provider(Box::new(e)))
    }
}
