//! Statuses: what became of each message, kept behind one seam
//! ([`StatusStore`]) with two homes — the embedded default's SQLite database
//! and, with SNS, a DynamoDB table — and told to the application as events.
//!
//! Who writes what: the gateway records `accepted`; the consumer (all three
//! transports, through the delivery pipeline) records `submitted` with the
//! provider's message id, or `failed`; webhooks record the providers' reports,
//! matched by that id. A report whose id is not recorded yet is kept under
//! the id and merged when the send is recorded. Every store applies the same
//! merge ([`model::merge`]) and emits one event per change of the current
//! status from `submitted` on.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

use crate::contract::{Envelope, FallbackLeg};

pub mod apply;
pub mod dynamodb;
pub mod error;
pub mod events;
pub mod model;
pub mod record;

pub use crate::optout::store::OptOutStore;
pub use error::StoreError;
pub use model::{Entry, ErrorCode, FailureMark, History, Status, StatusError};
pub use record::MessageRecord;

pub use futures_util::future::BoxFuture;

/// What the sender knew about a message: written once, by whoever records first.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageInfo {
    /// The message id.
    pub id: String,
    /// The API key id that sent it: only that key can read it.
    pub api_key_id: String,
    /// The channel it was sent on.
    pub channel: String,
    /// The recipient, E.164.
    pub to: String,
    /// The client's opaque data, echoed in events.
    pub callback_data: Option<String>,
    /// When the gateway accepted it, Unix ms.
    pub accepted_at_ms: i64,
    /// Its fallback, kept so that a provider's later report of a failure
    /// that fails over can send it.
    pub fallback: Option<FallbackLeg>,
}

impl MessageInfo {
    /// What an envelope says about its message (a failover leg's envelope
    /// files it under the channel that was tried first).
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            id: envelope.id.to_string(),
            api_key_id: envelope.api_key_id.clone(),
            channel: envelope.first_channel().as_str().to_owned(),
            to: envelope.to.as_str().to_owned(),
            callback_data: envelope.callback_data.clone(),
            accepted_at_ms: envelope.accepted_at.timestamp_millis(),
            fallback: envelope.fallback.clone(),
        }
    }

    /// The `accepted` entry this message has whoever records it first: the
    /// sender's knowledge includes when the gateway accepted it.
    pub fn accepted_entry(&self) -> Entry {
        Entry {
            at_ms: self.accepted_at_ms,
            channel: Some(self.channel.clone()),
            attempt: None,
            provider_status: None,
            error: None,
        }
    }
}

/// One status to merge.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// From the gateway or the consumer, which know the message.
    Message {
        /// The message.
        info: MessageInfo,
        /// The status reached.
        status: Status,
        /// Its details.
        entry: Entry,
        /// The provider's id for it, once submitted (correlates reports).
        provider_message_id: Option<String>,
    },
    /// From a provider's report, which knows only the provider's id.
    Provider {
        /// The provider's message id (wamid, or Herald's id for Infobip).
        provider_message_id: String,
        /// The status reported.
        status: Status,
        /// Its details (a failure whose class is `unreachable` sends a
        /// message's fallback: see [`Entry::fails_over`]).
        entry: Entry,
    },
}

/// An inbound message from a provider, to become a `message.inbound` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The provider's id for it (deduplicates the provider's retries).
    pub provider_message_id: String,
    /// The channel it came on.
    pub channel: String,
    /// The sender, E.164.
    pub from: String,
    /// The sender's profile name, when the provider gave one.
    pub contact_name: Option<String>,
    /// When it was sent, Unix ms.
    pub at_ms: i64,
    /// The provider's inbound message object, untouched.
    pub message: Value,
}

impl Inbound {
    /// The message's whole text, whichever channel it came on: WhatsApp's
    /// `text.body` (or a button's text), Infobip's `text` — never Infobip's
    /// `cleanText`, which is the text with Infobip's keyword taken out (a
    /// STOP set up as a keyword on the number would leave it empty).
    pub fn text(&self) -> Option<&str> {
        let m = &self.message;
        m.pointer("/text/body")
            .or_else(|| m.pointer("/button/text"))
            .and_then(Value::as_str)
            .or_else(|| m.get("text").and_then(Value::as_str))
    }
}

/// Where statuses live. Every method is idempotent: providers and queues
/// deliver at least once. A status store keeps opt-outs too (the same table
/// or database), behind their own seam, [`OptOutStore`].
pub trait StatusStore: OptOutStore {
    /// Merges `updates`, emitting an event for each change of a message's
    /// current status (from `submitted` on), and records `inbound` messages,
    /// emitting a `message.inbound` event for each one not seen before.
    /// `Ok` means recorded durably (and, with SNS, the events published).
    fn record(
        &self,
        updates: Vec<Update>,
        inbound: Vec<Inbound>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The message `id` if `api_key_id` sent it.
    fn get<'a>(
        &'a self,
        id: &'a str,
        api_key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>>;
}

/// The `accepted` update for an envelope the gateway has just published.
pub fn accepted(envelope: &Envelope) -> Update {
    let info = MessageInfo::of(envelope);
    Update::Message {
        status: Status::Accepted,
        entry: info.accepted_entry(),
        info,
        provider_message_id: None,
    }
}

pub use crate::clock::now_ms;

/// Unix milliseconds as the API writes times: RFC 3339, UTC, milliseconds.
pub fn format_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
