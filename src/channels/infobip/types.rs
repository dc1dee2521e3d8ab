//! Infobip's request and response shapes for `POST /sms/3/messages`
//! (`docs/providers/infobip.md` has them, with Infobip's sources).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::contract::Envelope;

/// The `/sms/3/messages` request for one envelope: Herald's message id as
/// Infobip's `messageId` (so every delivery report names it), the sender
/// (the message's, else `default_sender`; Infobip's account default when
/// neither), and the delivery-report webhook when `public_base_url` is set
/// (no report can come back without it), carrying `callbackData`.
pub fn request_body(
    envelope: &Envelope,
    default_sender: Option<&str>,
    public_base_url: Option<&str>,
) -> Value {
    let mut message = Map::with_capacity(4);
    let sender = envelope
        .message
        .get("sender")
        .and_then(Value::as_str)
        .or(default_sender);
    if let Some(sender) = sender {
        message.insert("sender".into(), Value::from(sender));
    }
    message.insert(
        "destinations".into(),
        json!([{"to": envelope.to.digits(), "messageId": envelope.id.to_string()}]),
    );
    let text = envelope
        .message
        .pointer("/text/body")
        .cloned()
        .unwrap_or_default();
    message.insert("content".into(), json!({ "text": text }));
    if let Some(validity) = remaining_validity(envelope) {
        message.insert(
            "options".into(),
            json!({"validityPeriod": {"amount": validity, "timeUnit": "SECONDS"}}),
        );
    }
    if let Some(base) = public_base_url {
        let mut webhooks = json!({
            "delivery": {"url": format!("{base}/webhooks/infobip")},
            "contentType": "application/json",
        });
        if let Some(data) = &envelope.callback_data {
            webhooks["callbackData"] = Value::from(data.as_str());
        }
        message.insert("webhooks".into(), webhooks);
    }
    json!({ "messages": [Value::Object(message)] })
}

/// Infobip keeps trying a message for at most 48 hours.
const MAX_VALIDITY_SECS: i64 = 48 * 3600;

/// The seconds left before the envelope expires, as Infobip's
/// `validityPeriod` (at least 1, at most 48 h); `None` without an expiry.
fn remaining_validity(envelope: &Envelope) -> Option<i64> {
    let left = envelope.expires_at? - chrono::Utc::now();
    Some(left.num_seconds().clamp(1, MAX_VALIDITY_SECS))
}

/// Infobip's status object (send responses and delivery reports).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InfobipStatus {
    /// 1 PENDING, 2 UNDELIVERABLE, 3 DELIVERED, 4 EXPIRED, 5 REJECTED.
    #[serde(default)]
    pub group_id: i64,
    /// The group's name.
    #[serde(default)]
    pub group_name: String,
    /// The status id (`26` PENDING_ACCEPTED, `5` DELIVERED_TO_HANDSET…).
    #[serde(default)]
    pub id: i64,
    /// The status name.
    #[serde(default)]
    pub name: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
}

/// A successful send's response: one entry per destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    /// The bulk the message belongs to.
    #[serde(default)]
    pub bulk_id: Option<String>,
    /// The messages, with their first status.
    #[serde(default)]
    pub messages: Vec<SentMessage>,
}

/// One destination of a send response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// The message id (Herald's, as sent).
    #[serde(default)]
    pub message_id: Option<String>,
    /// Its status.
    #[serde(default)]
    pub status: InfobipStatus,
}

/// A v3 API error body (`{"errorCode", "description", …}`), or the older
/// `requestError.serviceException` shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorBody {
    /// `E429`, `E401`…
    #[serde(default)]
    pub error_code: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub description: Option<String>,
    /// The v1/v2 shape.
    #[serde(default)]
    pub request_error: Option<Value>,
}

impl ApiErrorBody {
    /// A one-line description of the error.
    pub fn summary(&self) -> String {
        let legacy = self
            .request_error
            .as_ref()
            .and_then(|e| e.pointer("/serviceException/text"))
            .and_then(Value::as_str);
        match (&self.error_code, self.description.as_deref().or(legacy)) {
            (Some(code), Some(text)) => format!("{code}: {text}"),
            (None, Some(text)) => text.to_owned(),
            (Some(code), None) => code.clone(),
            (None, None) => "no description".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboundMessage;

    fn envelope(body: Value) -> Envelope {
        let msg = OutboundMessage::try_from(body).unwrap();
        Envelope::new(uuid::Uuid::now_v7(), msg, "ops")
    }

    #[test]
    fn the_request_names_herald_s_id_and_the_report_url() {
        let env = envelope(
            json!({"channel": "sms", "to": "+41793026727", "message": "Hi €",
            "sender": "Shop", "callbackData": "order-42"}),
        );
        let body = request_body(&env, Some("Default"), Some("https://gw.example.com"));
        assert_eq!(
            body,
            json!({"messages": [{"sender": "Shop",
                "destinations": [{"to": "41793026727", "messageId": env.id.to_string()}],
                "content": {"text": "Hi €"},
                "webhooks": {"delivery": {"url": "https://gw.example.com/webhooks/infobip"},
                    "contentType": "application/json", "callbackData": "order-42"}}]})
        );
    }

    #[test]
    fn without_a_public_url_there_is_no_webhook_and_the_default_sender_applies() {
        let env = envelope(json!({"channel": "sms", "to": "+41793026727", "message": "Hi"}));
        let body = request_body(&env, Some("Default"), None);
        assert_eq!(body["messages"][0]["sender"], "Default");
        assert!(body["messages"][0].get("webhooks").is_none());
        let body = request_body(&env, None, None);
        assert!(body["messages"][0].get("sender").is_none());
    }
}
