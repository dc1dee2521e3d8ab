//! The WhatsApp Cloud API: a thin typed client of `POST /{version}/{phone-number-id}/messages`,
//! and the reading of Meta's signed webhooks.

pub mod client;
pub mod error;
pub mod read_receipts;
pub mod templates;
pub mod types;
pub mod webhook;

pub use client::WhatsAppClient;
pub use error::WhatsAppError;
pub use types::{GraphError, SendResponse, request_body};
