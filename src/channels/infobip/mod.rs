//! SMS through Infobip: a thin typed client of `POST /sms/3/messages`
//! (written on reqwest and serde: the surface is one endpoint and two
//! webhook payloads, and the 0.x Infobip crates are not kept up enough to
//! depend on), its error taxonomy, and the reading of Infobip's delivery
//! reports and inbound messages.

pub mod client;
pub mod error;
pub mod types;
pub mod webhook;

pub use client::InfobipClient;
pub use error::InfobipError;
pub use types::request_body;
