//! A message's status record: what the sender knew, the provider's id and the
//! history, and how it reads in `GET /api/v1/messages/{id}`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::model::{self, Change, Entry, History, Status};
use super::{MessageInfo, format_ms};

/// Everything Herald knows about one message's fate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    /// The message id.
    pub id: String,
    /// The API key id that sent it (empty until the gateway or consumer writes).
    #[serde(default)]
    pub api_key_id: String,
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
    /// The statuses reached.
    #[serde(default)]
    pub history: History,
}

impl MessageRecord {
    /// An empty record for `id`.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            ..Self::default()
        }
    }

    /// Fills what the sender knew, unless a writer did before. What the
    /// sender knew includes that the message was accepted, and when: the
    /// `accepted` entry comes with it, whoever writes first.
    pub fn fill(&mut self, info: &MessageInfo) {
        if self.api_key_id.is_empty() {
            self.api_key_id.clone_from(&info.api_key_id);
            self.channel.clone_from(&info.channel);
            self.to.clone_from(&info.to);
            self.callback_data.clone_from(&info.callback_data);
            self.accepted_at_ms = info.accepted_at_ms;
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

    /// Merges one status (see [`model::merge`]); `now_ms` stamps the change.
    pub fn merge(&mut self, status: Status, entry: Entry, now_ms: i64) -> Change {
        let change = model::merge(&mut self.history, status, entry);
        if change.changed_to().is_some() || self.updated_at_ms == 0 {
            self.updated_at_ms = now_ms;
        }
        change
    }

    /// The current status.
    pub fn status(&self) -> Option<Status> {
        model::current(&self.history)
    }

    /// True once the gateway or the consumer has written what the sender
    /// knew (a record made only of early provider reports is not readable
    /// by anyone yet, and emits no events).
    pub fn is_known(&self) -> bool {
        !self.api_key_id.is_empty()
    }

    /// The channel of the latest leg: that of the newest entry that names one.
    pub fn latest_channel(&self) -> &str {
        self.history
            .values()
            .filter_map(|e| e.channel.as_deref().map(|c| (e.at_ms, c)))
            .max_by_key(|(at, _)| *at)
            .map_or(self.channel.as_str(), |(_, c)| c)
    }

    /// The failure shown as `error`: the `failed` entry's, unless delivery was
    /// proven after all.
    pub fn error(&self) -> Option<&model::StatusError> {
        (self.status() == Some(Status::Failed))
            .then(|| self.history.get(&Status::Failed))
            .flatten()
            .and_then(|e| e.error.as_ref())
    }

    /// The body of `GET /api/v1/messages/{id}` (DESIGN.md): the history in
    /// rank order, a failure last.
    pub fn to_view(&self) -> Value {
        let history: Vec<Value> = self
            .history
            .iter()
            .map(|(status, e)| history_item(*status, e))
            .collect();
        json!({
            "messageId": self.id,
            "channel": self.latest_channel(),
            "to": self.to,
            "status": self.status().map(Status::as_str),
            "providerMessageId": self.provider_message_id,
            "callbackData": self.callback_data,
            "acceptedAt": format_ms(self.accepted_at_ms),
            "updatedAt": format_ms(self.updated_at_ms),
            "error": self.error(),
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
        map.insert("error".into(), json!(err));
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

    #[test]
    fn the_view_lists_statuses_in_rank_order_with_a_failure_last() {
        let mut r = MessageRecord::new("m1");
        r.fill(&MessageInfo {
            id: "m1".into(),
            api_key_id: "k".into(),
            channel: "whatsapp".into(),
            to: "+14155550123".into(),
            callback_data: Some("order-42".into()),
            accepted_at_ms: 1_000,
        });
        r.merge(Status::Failed, entry(4_000, "whatsapp"), 4_000);
        r.merge(Status::Submitted, entry(2_000, "whatsapp"), 4_001);
        r.merge(Status::Accepted, entry(1_000, "whatsapp"), 4_002);
        let view = r.to_view();
        let statuses: Vec<&str> = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["accepted", "submitted", "failed"]);
        assert_eq!(view["status"], "failed");
        assert_eq!(view["acceptedAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(view["callbackData"], "order-42");
    }

    #[test]
    fn the_top_level_channel_is_the_latest_legs() {
        let mut r = MessageRecord::new("m1");
        r.channel = "whatsapp".into();
        r.merge(Status::Submitted, entry(1, "whatsapp"), 1);
        r.merge(Status::Delivered, entry(5, "sms"), 5);
        assert_eq!(r.latest_channel(), "sms");
    }
}
