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

use serde_json::Value;

use crate::contract::{Envelope, FallbackLeg};
pub use crate::tenants::Scope;

pub mod apply;
pub mod dynamodb;
pub mod error;
pub mod events;
pub mod model;
pub mod record;

pub use crate::optout::store::OptOutStore;
pub use crate::window::store::WindowStore;
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
    /// Its tenant: with `TENANTS_FILE`, every key of the tenant can read it.
    pub tenant: String,
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
    /// When it is due, if it was scheduled (`sendAt`, quiet hours), Unix ms.
    pub scheduled_for_ms: Option<i64>,
    /// The batch it was sent in.
    pub batch_id: Option<String>,
    /// Its sender, as resolved at acceptance (`from`), when named.
    pub from: Option<String>,
    /// The segments of its SMS text (its own, or its SMS fallback's): what
    /// `smsSegments` counts; 0 without one.
    pub sms_segments: i64,
}

impl MessageInfo {
    /// What an envelope says about its message (a failover leg's envelope
    /// files it under the channel that was tried first).
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            id: envelope.id.to_string(),
            api_key_id: envelope.api_key_id.clone(),
            tenant: envelope.tenant.clone(),
            channel: envelope.first_channel().as_str().to_owned(),
            to: envelope.to.as_str().to_owned(),
            callback_data: envelope.callback_data.clone(),
            accepted_at_ms: envelope.accepted_at.timestamp_millis(),
            fallback: envelope.fallback.clone(),
            scheduled_for_ms: envelope.send_at.map(|at| at.timestamp_millis()),
            batch_id: envelope.batch_id.clone(),
            from: envelope.from.clone(),
            sms_segments: envelope.sms_segments(),
        }
    }

    /// The `accepted` entry this message has whoever records it first: the
    /// sender's knowledge includes when the gateway accepted it.
    pub fn accepted_entry(&self) -> Entry {
        Entry::on(&self.channel, self.accepted_at_ms)
    }
}

/// One status to merge.
#[derive(Debug, Clone, PartialEq)]
// `Message` is the larger by what the sender knew; an update is built once
// per status and moved, never kept in bulk, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Inbound {
    /// The provider's id for it (deduplicates the provider's retries).
    pub provider_message_id: String,
    /// The channel it came on.
    pub channel: String,
    /// The sender, E.164.
    pub from: String,
    /// The number it was sent to: WhatsApp's `metadata.phone_number_id`,
    /// an SMS's `to`.
    pub to: Option<String>,
    /// The tenants it belongs to (the receiving number's; every tenant
    /// sharing the deployment's), set by the webhook route.
    pub tenants: Vec<String>,
    /// The sender's profile name, when the provider gave one.
    pub contact_name: Option<String>,
    /// When it was sent, Unix ms.
    pub at_ms: i64,
    /// The provider's inbound message object, untouched.
    pub message: Value,
}

impl Inbound {
    /// The window this message opens: the business number it was sent to
    /// and the person, for a WhatsApp message that names its number.
    pub fn window_key(&self) -> Option<(&str, &str)> {
        (self.channel == "whatsapp")
            .then_some(self.to.as_deref())
            .flatten()
            .map(|to| (to, self.from.as_str()))
    }

    /// The media a WhatsApp message carries (image, video, audio, document,
    /// sticker): Meta's media id for it.
    pub fn media_id(&self) -> Option<&str> {
        if self.channel != "whatsapp" {
            return None;
        }
        let kind = self.message.get("type")?.as_str()?;
        if !matches!(kind, "image" | "video" | "audio" | "document" | "sticker") {
            return None;
        }
        self.message.get(kind)?.get("id")?.as_str()
    }

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
pub trait StatusStore: OptOutStore + WindowStore + crate::templates::store::TemplateStore {
    /// Merges `updates`, emitting an event for each change of a message's
    /// current status (from `submitted` on), and records `inbound` messages,
    /// emitting a `message.inbound` event for each one not seen before.
    /// `Ok` means recorded durably (and, with SNS, the events published).
    fn record(
        &self,
        updates: Vec<Update>,
        inbound: Vec<Inbound>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The message `id` if it is in `scope`.
    fn get<'a>(
        &'a self,
        id: &'a str,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>>;

    /// Cancels each of `ids` in `scope` (and, given `batch`, of that batch:
    /// others are not found) that was not handed to a provider (recording
    /// `cancelled`, with its event); says, in order, what it found for each
    /// (an id with nothing stored may be left out).
    fn cancel<'a>(
        &'a self,
        ids: &'a [String],
        scope: &'a Scope,
        batch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Cancellation>, StoreError>>;

    /// Publishes the `message.inbound` event of `inbound` with its kept
    /// `media` (a media job's end, with SNS), once.
    fn inbound_media_kept<'a>(
        &'a self,
        inbound: &'a Inbound,
        media: Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (inbound, media);
        Box::pin(async { Ok(()) })
    }

    /// Marks `envelope`'s message handed to a provider, just before the
    /// call: `Ok(false)` when it was cancelled first (it must not be sent).
    /// Stores whose queue decides this themselves (the embedded default's
    /// lease and cancel share one writer) answer `true` at once.
    fn hand<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = envelope;
        Box::pin(async { Ok(true) })
    }
}

/// What cancelling a message found (`DELETE /api/v1/messages/{id}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Cancellation {
    /// Cancelled, now or before: its record, status `cancelled`.
    Cancelled(MessageRecord),
    /// Handed to a provider already, or being handed: its record.
    AlreadySent(MessageRecord),
    /// No such message in the caller's scope.
    NotFound,
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

pub use crate::clock::{format_ms, now_ms};
