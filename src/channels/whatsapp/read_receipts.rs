//! Read receipts: a received message is marked read from the number that
//! received it, with that number's token (`POST /{number}/messages` with
//! `"status": "read"`). One client per configured number, built once.

use std::collections::HashMap;
use std::sync::Arc;

use super::client::WhatsAppClient;
use super::error::WhatsAppError;
use crate::config::{DeliveryConfig, DeliveryMode};

/// Most automatic read receipts in flight: past it, a flood of inbound
/// messages skips its receipts (logged) instead of piling up tasks.
const AUTO_IN_FLIGHT: usize = 32;

/// The numbers this process can mark messages read from.
#[derive(Debug)]
pub struct ReadReceipts {
    clients: HashMap<String, WhatsAppClient>,
    auto: Arc<tokio::sync::Semaphore>,
}

impl Default for ReadReceipts {
    fn default() -> Self {
        Self {
            clients: HashMap::new(),
            auto: Arc::new(tokio::sync::Semaphore::new(AUTO_IN_FLIGHT)),
        }
    }
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
        Ok(Self {
            clients,
            ..Self::default()
        })
    }

    /// The client of number `number_id`, when this process has its token
    /// (inbound media is downloaded with it too).
    pub fn client(&self, number_id: &str) -> Option<&WhatsAppClient> {
        self.clients.get(number_id)
    }

    /// `WHATSAPP_AUTO_READ`: marks `message_id` read in the background, at
    /// most [`AUTO_IN_FLIGHT`] at once (more are skipped, with a warning).
    pub fn mark_in_background(self: &Arc<Self>, number_id: &str, message_id: &str) {
        let Ok(permit) = self.auto.clone().try_acquire_owned() else {
            tracing::warn!("automatic read receipts are all in flight; one is skipped");
            return;
        };
        let (receipts, number_id, message_id) =
            (self.clone(), number_id.to_owned(), message_id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = receipts.mark(&number_id, &message_id, false).await {
                tracing::warn!(error.message = %e, "could not mark an inbound message read");
            }
            drop(permit);
        });
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
