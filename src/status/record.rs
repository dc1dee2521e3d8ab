//! A message's status record: what the sender knew, the provider's id and the
//! history, and how it reads in `GET /api/v1/messages/{id}`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::model::{self, Change, Entry, History, Status};
use super::{MessageInfo, format_ms};
use crate::contract::{ENVELOPE_VERSION, Envelope, FallbackLeg};
use crate::domain::PhoneNumber;

/// Everything Herald knows about one message's fate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    /// The message id.
    pub id: String,
    /// The API key id that sent it (empty until the gateway or consumer writes).
    #[serde(default)]
    pub api_key_id: String,
    /// The tenant it belongs to.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The channel it was sent on.
    #[serde(default)]
    pub channel: String,
    /// The recipient, E.164.
    #[serde(default)]
    pub to: String,
    /// The client's opaque data.
    #[serde(default)]
    pub callback_data: Option<String>,
    /// The provider's message id, once submitted.
    #[serde(default)]
    pub provider_message_id: Option<String>,
    /// When the gateway accepted it, Unix ms.
    #[serde(default)]
    pub accepted_at_ms: i64,
    /// When the record last changed, Unix ms.
    #[serde(default)]
    pub updated_at_ms: i64,
    /// The statuses reached on the first channel.
    #[serde(default)]
    pub history: History,
    /// The message's fallback, while it may still be needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_leg: Option<FallbackLeg>,
    /// When a provider's report sent the message by its fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_at_ms: Option<i64>,
    /// Failures an operator's redrive set aside, oldest first: shown in the
    /// history before the `redriven` entry, no longer the message's status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_failures: Vec<Entry>,
    /// The statuses of the failover leg (the SMS sent after WhatsApp could
    /// not reach the person): entries on another channel than the first.
    #[serde(default, skip_serializing_if = "History::is_empty")]
    pub fallback: History,
    /// When it was due, if it was scheduled, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for_ms: Option<i64>,
    /// The batch it was sent in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

fn default_tenant() -> String {
    crate::contract::DEFAULT_TENANT.to_owned()
}

impl MessageRecord {
    /// An empty record for `id`.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            tenant: default_tenant(),
            ..Self::default()
        }
    }

    /// Fills what the sender knew, unless a writer did before. What the
    /// sender knew includes that the message was accepted, and when: the
    /// `accepted` entry comes with it, whoever writes first.
    pub fn fill(&mut self, info: &MessageInfo) {
        if self.api_key_id.is_empty() {
            self.api_key_id.clone_from(&info.api_key_id);
            self.tenant.clone_from(&info.tenant);
            self.channel.clone_from(&info.channel);
            self.to.clone_from(&info.to);
            self.callback_data.clone_from(&info.callback_data);
            self.accepted_at_ms = info.accepted_at_ms;
            self.fallback_leg.clone_from(&info.fallback);
            self.scheduled_for_ms = info.scheduled_for_ms;
            self.batch_id.clone_from(&info.batch_id);
            self.history
                .entry(Status::Accepted)
                .or_insert_with(|| info.accepted_entry());
        }
    }

    /// The record of a message only accepted so far.
    pub fn accepted(info: &MessageInfo) -> Self {
        let mut record = Self::new(&info.id);
        record.fill(info);
        record.updated_at_ms = info.accepted_at_ms;
        record
    }

    /// True when `entry` belongs to the failover leg: it names a channel
    /// other than the one the message was sent on first.
    fn is_failover(&self, entry: &Entry) -> bool {
        !self.channel.is_empty() && entry.channel.as_deref().is_some_and(|c| c != self.channel)
    }

    /// The leg `entry` belongs to.
    fn leg_of(&self, entry: &Entry) -> &History {
        if self.is_failover(entry) {
            &self.fallback
        } else {
            &self.history
        }
    }

    /// The latest leg: the failover's once it has begun.
    fn latest_leg(&self) -> &History {
        if self.fallback.is_empty() {
            &self.history
        } else {
            &self.fallback
        }
    }

    /// True when `entry`'s leg already reached `status` (a repeated report).
    pub fn has(&self, status: Status, entry: &Entry) -> bool {
        self.leg_of(entry).contains_key(&status)
    }

    /// Merges one status into its leg (see [`model::merge`]); `now_ms`
    /// stamps the change. The change is that of the message's status, the
    /// latest leg's.
    pub fn merge(&mut self, status: Status, entry: Entry, now_ms: i64) -> Change {
        let before = self.status();
        let leg = if self.is_failover(&entry) {
            &mut self.fallback
        } else {
            &mut self.history
        };
        model::merge(leg, status, entry);
        let change = Change {
            before,
            after: self.status(),
        };
        if change.changed_to().is_some() || self.updated_at_ms == 0 {
            self.updated_at_ms = now_ms;
        }
        change
    }

    /// An operator's redrive of the message's dead letter at `now_ms`: the
    /// latest leg's failure is set aside (kept, shown before the redrive) and
    /// a `redriven` entry added, so the message can reach its statuses again.
    pub fn redrive(&mut self, now_ms: i64) -> Change {
        let before = self.status();
        let channel = self.latest_channel().to_owned();
        let leg = if self.fallback.is_empty() {
            &mut self.history
        } else {
            &mut self.fallback
        };
        if let Some(failure) = leg.remove(&Status::Failed) {
            self.earlier_failures.push(failure);
        }
        leg.insert(
            Status::Redriven,
            Entry {
                at_ms: now_ms,
                channel: Some(channel),
                attempt: None,
                provider_status: None,
                error: None,
            },
        );
        self.updated_at_ms = now_ms;
        Change {
            before,
            after: self.status(),
        }
    }

    /// The current status: that of the latest leg.
    pub fn status(&self) -> Option<Status> {
        model::current(self.latest_leg())
    }

    /// The latest leg's entry for `status`.
    pub fn entry(&self, status: Status) -> Option<&Entry> {
        self.latest_leg().get(&status)
    }

    /// True once the gateway or the consumer has written what the sender
    /// knew (a record made only of early provider reports is not readable
    /// by anyone yet, and emits no events).
    pub fn is_known(&self) -> bool {
        !self.api_key_id.is_empty()
    }

    /// The channel of the latest leg.
    pub fn latest_channel(&self) -> &str {
        self.fallback
            .values()
            .find_map(|e| e.channel.as_deref())
            .unwrap_or(self.channel.as_str())
    }

    /// The failure shown as `error`: the latest leg's `failed` entry's,
    /// unless delivery was proven after all.
    pub fn error(&self) -> Option<&model::StatusError> {
        (self.status() == Some(Status::Failed))
            .then(|| self.entry(Status::Failed))
            .flatten()
            .and_then(|e| e.error.as_ref())
    }

    /// The envelope of this message's failover leg, when a provider reported
    /// a failure that fails over (`fails_over`) and the message has a
    /// fallback not sent yet. The envelope carries what the record knows
    /// (not the sender's `metadata`).
    pub fn failover_envelope(&self, fails_over: bool) -> Option<Envelope> {
        if !fails_over || self.failover_at_ms.is_some() || !self.fallback.is_empty() {
            return None;
        }
        // The first leg's envelope as far as the record knows it (its own
        // message is not kept); `Envelope::failover` makes the leg from it.
        let first = Envelope {
            version: ENVELOPE_VERSION,
            id: self.id.parse().ok()?,
            channel: serde_json::from_value(Value::from(self.channel.as_str())).ok()?,
            to: PhoneNumber::parse(&self.to).ok()?,
            message: Value::Null,
            reply_to: None,
            callback_data: self.callback_data.clone(),
            metadata: serde_json::Map::new(),
            accepted_at: chrono::DateTime::from_timestamp_millis(self.accepted_at_ms)?,
            api_key_id: self.api_key_id.clone(),
            fallback: self.fallback_leg.clone(),
            failover_from: None,
            pending_status: None,
            tenant: self.tenant.clone(),
            from: None,
            priority: crate::contract::Priority::default(),
            // Kept with the leg.
            expires_at: self.fallback_leg.as_ref().and_then(|l| l.expires_at),
            send_at: None,
            batch_id: self.batch_id.clone(),
            inbound_media: None,
        };
        first.failover()
    }

    /// The body of `GET /api/v1/messages/{id}`: the history in rank order, a
    /// failure last; after a failover, the first leg's, then the failover
    /// leg's.
    pub fn to_view(&self) -> Value {
        let mut history: Vec<Value> = Vec::new();
        for (status, e) in self.history.iter().chain(&self.fallback) {
            if *status == Status::Redriven {
                history.extend(
                    self.earlier_failures
                        .iter()
                        .map(|f| history_item(Status::Failed, f)),
                );
            }
            history.push(history_item(*status, e));
        }
        json!({
            "messageId": self.id,
            "channel": self.latest_channel(),
            "to": self.to,
            "status": self.status().map(Status::as_str),
            "providerMessageId": self.provider_message_id,
            "callbackData": self.callback_data,
            "acceptedAt": format_ms(self.accepted_at_ms),
            "updatedAt": format_ms(self.updated_at_ms),
            "error": self.error().map(model::StatusError::view),
            "scheduledFor": self.scheduled_for_ms.map(format_ms),
            "batchId": self.batch_id,
            "history": history,
        })
    }
}

fn history_item(status: Status, e: &Entry) -> Value {
    let mut item = json!({"status": status.as_str(), "at": format_ms(e.at_ms)});
    let map = item.as_object_mut().expect("a json! object");
    if let Some(c) = &e.channel {
        map.insert("channel".into(), c.as_str().into());
    }
    if let Some(a) = e.attempt {
        map.insert("attempt".into(), a.into());
    }
    if let Some(p) = &e.provider_status {
        map.insert("providerStatus".into(), p.as_str().into());
    }
    if let Some(err) = &e.error {
        map.insert("error".into(), err.view());
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: i64, channel: &str) -> Entry {
        Entry {
            at_ms,
            channel: Some(channel.into()),
            attempt: None,
            provider_status: None,
            error: None,
        }
    }

    /// The statuses of a view's history, in order.
    fn history_statuses(view: &serde_json::Value) -> Vec<&str> {
        view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_view_lists_statuses_in_rank_order_with_a_failure_last() {
        let mut r = MessageRecord::new("m1");
        r.fill(&MessageInfo {
            id: "m1".into(),
            api_key_id: "k".into(),
            tenant: "default".into(),
            channel: "whatsapp".into(),
            to: "+14155550123".into(),
            callback_data: Some("order-42".into()),
            accepted_at_ms: 1_000,
            fallback: None,
            scheduled_for_ms: None,
            batch_id: None,
            from: None,
            sms_segments: 0,
        });
        r.merge(Status::Failed, entry(4_000, "whatsapp"), 4_000);
        r.merge(Status::Submitted, entry(2_000, "whatsapp"), 4_001);
        r.merge(Status::Accepted, entry(1_000, "whatsapp"), 4_002);
        let view = r.to_view();
        let statuses = history_statuses(&view);
        assert_eq!(statuses, ["accepted", "submitted", "failed"]);
        assert_eq!(view["status"], "failed");
        assert_eq!(view["acceptedAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(view["callbackData"], "order-42");
    }

    #[test]
    fn a_redrive_sets_the_failure_aside_and_lets_the_message_move_on() {
        let mut r = MessageRecord::new("m1");
        r.channel = "whatsapp".into();
        r.merge(Status::Accepted, entry(1, "whatsapp"), 1);
        r.merge(Status::Failed, entry(2, "whatsapp"), 2);
        let change = r.redrive(3);
        assert_eq!(change.changed_to(), Some(Status::Redriven));
        assert_eq!(r.error(), None);
        r.merge(Status::Submitted, entry(4, "whatsapp"), 4);
        assert_eq!(r.status(), Some(Status::Submitted));
        // It may fail again: that failure is the message's status.
        r.merge(Status::Failed, entry(5, "whatsapp"), 5);
        assert_eq!(r.status(), Some(Status::Failed));
        let view = r.to_view();
        let statuses = history_statuses(&view);
        assert_eq!(
            statuses,
            ["accepted", "failed", "redriven", "submitted", "failed"]
        );
    }

    #[test]
    fn a_failover_leg_follows_the_first_and_sets_the_status() {
        let mut r = MessageRecord::new("m1");
        r.channel = "whatsapp".into();
        r.merge(Status::Accepted, entry(1, "whatsapp"), 1);
        r.merge(Status::Failed, entry(2, "whatsapp"), 2);
        assert_eq!(r.status(), Some(Status::Failed));
        assert_eq!(r.latest_channel(), "whatsapp");
        // The SMS leg: the message is what its latest leg is.
        let change = r.merge(Status::Submitted, entry(3, "sms"), 3);
        assert_eq!(change.changed_to(), Some(Status::Submitted));
        assert_eq!(r.latest_channel(), "sms");
        assert_eq!(r.error(), None);
        r.merge(Status::Delivered, entry(5, "sms"), 5);
        // A repeated or late report of the first leg changes nothing.
        assert!(r.has(Status::Failed, &entry(9, "whatsapp")));
        assert_eq!(
            r.merge(Status::Sent, entry(9, "whatsapp"), 9).changed_to(),
            None
        );
        assert_eq!(r.status(), Some(Status::Delivered));
        let view = r.to_view();
        let legs: Vec<(&str, &str)> = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["status"].as_str().unwrap(),
                    h["channel"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            legs,
            [
                ("accepted", "whatsapp"),
                ("sent", "whatsapp"),
                ("failed", "whatsapp"),
                ("submitted", "sms"),
                ("delivered", "sms")
            ]
        );
        assert_eq!(view["channel"], "sms");
        assert_eq!(view["status"], "delivered");
    }
}
