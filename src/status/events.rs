//! The events Herald sends: `message.status` for every change of a message's
//! current status from `submitted` on, `message.inbound` for every inbound
//! message seen for the first time, and `recipient.opt-out`. Built here, from
//! the records; sent by `events::sns` (with SNS) or the embedded outbox's
//! sender (`embedded::event_sender`).

use serde_json::{Value, json};

use super::{Inbound, MessageRecord, Status, format_ms};

/// The only event version this build writes.
pub const EVENT_VERSION: u32 = 1;

/// One event, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id (UUID v7): receivers deduplicate on it.
    pub id: String,
    /// `message.status`, `message.inbound` or `recipient.opt-out`.
    pub kind: &'static str,
    /// The channel, for the SNS attribute.
    pub channel: String,
    /// The status, for `message.status`.
    pub status: Option<&'static str>,
    /// The event JSON.
    pub body: String,
}

/// The event id for `subject` (a message id and status, or an inbound
/// message's provider id): a UUID v7 whose time is `at_ms` and whose other
/// bits come from a digest of `subject`. Two writers that emit the same
/// event at once (a race the stores allow rather than lock against) give it
/// the same id, so receivers deduplicate it on `eventId`/`webhook-id`.
fn event_id(at_ms: i64, subject: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for part in subject {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let bytes = digest.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&bytes[..10]);
    uuid::Builder::from_unix_timestamp_millis(at_ms.max(0) as u64, &random)
        .into_uuid()
        .to_string()
}

/// The `message.status` event for `record` having reached `status`, or `None`
/// for `accepted` (the 202 already said so) or a record no sender has written.
pub fn status_event(record: &MessageRecord, status: Status, now_ms: i64) -> Option<Event> {
    if status == Status::Accepted || !record.is_known() {
        return None;
    }
    let entry = record.entry(status);
    let id = event_id(
        entry.map_or(now_ms, |e| e.at_ms),
        &[&record.id, status.as_str()],
    );
    let channel = entry
        .and_then(|e| e.channel.clone())
        .unwrap_or_else(|| record.latest_channel().to_owned());
    let body = json!({
        "version": EVENT_VERSION,
        "type": "message.status",
        "eventId": id,
        "at": format_ms(entry.map_or(now_ms, |e| e.at_ms)),
        "messageId": record.id,
        "channel": channel,
        "status": status.as_str(),
        "providerStatus": entry.and_then(|e| e.provider_status.as_deref()),
        "providerMessageId": record.provider_message_id,
        "to": record.to,
        "callbackData": record.callback_data,
        "error": if status == Status::Failed { entry.and_then(|e| e.error.as_ref()).map(crate::status::StatusError::view) } else { None },
    });
    Some(Event {
        id,
        kind: "message.status",
        channel,
        status: Some(status.as_str()),
        body: body.to_string(),
    })
}

/// The `recipient.opt-out` event for a change of `number`'s opt-out to
/// `channels` (empty: opted back in to everything), made by `source`.
pub fn opt_out_event(
    update: &crate::optout::OptOutUpdate,
    channels: &std::collections::BTreeSet<String>,
    at_ms: i64,
) -> Event {
    use crate::optout::Change;
    let (tenant, number, source) = (&update.tenant, &update.number, &update.source);
    let channel = match &update.change {
        Change::Add(c) | Change::Remove(c) => c.clone(),
        Change::Set(_) | Change::Clear => "all".to_owned(),
    };
    let joined: Vec<&str> = channels.iter().map(String::as_str).collect();
    let id = event_id(
        at_ms,
        &["opt-out", tenant, number, &joined.join(","), source],
    );
    let body = json!({
        "version": EVENT_VERSION,
        "type": "recipient.opt-out",
        "eventId": id,
        "at": format_ms(at_ms),
        "tenant": tenant,
        "number": number,
        "channel": channel,
        "optedOut": !channels.is_empty(),
        "channels": joined,
        "source": source,
    });
    Event {
        id,
        kind: "recipient.opt-out",
        channel,
        status: None,
        body: body.to_string(),
    }
}

/// The `message.inbound` event for an inbound message.
pub fn inbound_event(inbound: &Inbound) -> Event {
    inbound_event_with(inbound, None)
}

/// The `message.inbound` event of a message with media, once the media is
/// kept (`{"mediaId", "mimeType", "sha256", "size"}`) or given up
/// (`{"error"}`).
pub fn inbound_event_with(inbound: &Inbound, media: Option<Value>) -> Event {
    let id = event_id(inbound.at_ms, &["inbound", &inbound.provider_message_id]);
    let mut body = json!({
        "version": EVENT_VERSION,
        "type": "message.inbound",
        "eventId": id,
        "at": format_ms(inbound.at_ms),
        "channel": inbound.channel,
        "from": inbound.from,
        "to": inbound.to,
        "tenants": inbound.tenants,
        "providerMessageId": inbound.provider_message_id,
        "contactName": inbound.contact_name,
        "message": inbound.message,
    });
    if let Some(media) = media {
        body["media"] = media;
    }
    Event {
        id,
        kind: "message.inbound",
        channel: inbound.channel.clone(),
        status: None,
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_v7_and_the_same_for_the_same_event() {
        let a = event_id(1_750_000_000_000, &["m1", "delivered"]);
        let b = event_id(1_750_000_000_000, &["m1", "delivered"]);
        let c = event_id(1_750_000_000_000, &["m1", "read"]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        let (seconds, _) = parsed.get_timestamp().unwrap().to_unix();
        assert_eq!(seconds, 1_750_000_000);
    }
}
