//! The Graph API's request and response shapes for sending messages.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::contract::Envelope;

/// The JSON body for one envelope: `messaging_product`, `recipient_type` and `to`
/// (digits only), the envelope's message object, then `context` from `replyTo`
/// and `biz_opaque_callback_data` from `callbackData`.
pub fn request_body(envelope: &Envelope) -> Value {
    let mut body = Map::with_capacity(8);
    body.insert("messaging_product".into(), Value::from("whatsapp"));
    body.insert("recipient_type".into(), Value::from("individual"));
    body.insert("to".into(), Value::from(envelope.to.digits()));
    if let Value::Object(message) = &envelope.message {
        for (k, v) in message {
            body.insert(k.clone(), v.clone());
        }
    }
    if let Some(reply_to) = &envelope.reply_to {
        body.insert(
            "context".into(),
            serde_json::json!({ "message_id": reply_to }),
        );
    }
    if let Some(data) = &envelope.callback_data {
        body.insert(
            "biz_opaque_callback_data".into(),
            Value::from(data.as_str()),
        );
    }
    Value::Object(body)
}

/// A successful send: Meta accepted the message (delivery is reported later by webhook).
#[derive(Debug, Clone, Deserialize)]
pub struct SendResponse {
    /// Always `whatsapp`.
    #[serde(default)]
    pub messaging_product: Option<String>,
    /// The recipient as sent and as WhatsApp knows it.
    #[serde(default)]
    pub contacts: Vec<ResponseContact>,
    /// One entry: the new message's `wamid`.
    pub messages: Vec<ResponseMessage>,
}

/// A recipient in a send response.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseContact {
    /// What we sent as `to`.
    pub input: Option<String>,
    /// WhatsApp's id for the user.
    pub wa_id: Option<String>,
}

/// The created message in a send response.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseMessage {
    /// The WhatsApp message id (`wamid.…`).
    pub id: String,
    /// `accepted`, `held_for_quality_assessment` or `paused`, when present.
    pub message_status: Option<String>,
}

/// The Graph API's error envelope: `{"error": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct GraphErrorBody {
    /// The error itself.
    pub error: GraphError,
}

/// A Graph API error. Meta advises keying on `code` (and `error_data.details`),
/// not on the HTTP status or the message text.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct GraphError {
    /// `(#131026) Message undeliverable`.
    #[serde(default)]
    pub message: String,
    /// `OAuthException` and the like.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The error code that decides what to do.
    pub code: i64,
    /// Usually 2494010 for message errors; not used for decisions.
    #[serde(default)]
    pub error_subcode: Option<i64>,
    /// An object with `details`, or a plain string on some endpoints.
    #[serde(default)]
    pub error_data: Option<Value>,
    /// Meta's hint that retrying may succeed.
    #[serde(default)]
    pub is_transient: Option<bool>,
    /// Trace id to quote to Meta support.
    #[serde(default)]
    pub fbtrace_id: Option<String>,
    /// A title meant for end users, when Meta sends one.
    #[serde(default)]
    pub error_user_title: Option<String>,
    /// A message meant for end users, when Meta sends one.
    #[serde(default)]
    pub error_user_msg: Option<String>,
}

impl GraphError {
    /// `error_data.details` when `error_data` is an object, or `error_data` itself when a string.
    pub fn details(&self) -> Option<&str> {
        match self.error_data.as_ref()? {
            Value::String(s) => Some(s),
            Value::Object(o) => o.get("details").and_then(Value::as_str),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboundMessage;
    use serde_json::json;

    #[test]
    fn the_body_adds_product_recipient_context_and_callback_data() {
        let msg = OutboundMessage::try_from(json!({"to": "+16505551234", "message": "hi",
            "replyTo": "wamid.PREV", "callbackData": "order-42"}))
        .unwrap();
        let env = Envelope::new(uuid::Uuid::now_v7(), msg, "ops");
        assert_eq!(
            request_body(&env),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
                "type": "text", "text": {"body": "hi", "preview_url": false},
                "context": {"message_id": "wamid.PREV"}, "biz_opaque_callback_data": "order-42"})
        );
    }

    #[test]
    fn error_data_may_be_an_object_or_a_string() {
        let obj: GraphErrorBody = serde_json::from_value(json!({"error": {"message": "(#131026) Message undeliverable",
            "type": "OAuthException", "code": 131026, "error_data": {"messaging_product": "whatsapp",
            "details": "Receiver is incapable of receiving this message"}, "error_subcode": 2494010,
            "fbtrace_id": "A4O5a8RAgePwbcGSu", "is_transient": false}}))
        .unwrap();
        assert_eq!(
            obj.error.details(),
            Some("Receiver is incapable of receiving this message")
        );
        let s: GraphErrorBody = serde_json::from_value(
            json!({"error": {"message": "x", "code": 100, "error_data": "plain details"}}),
        )
        .unwrap();
        assert_eq!(s.error.details(), Some("plain details"));
    }

    #[test]
    fn the_documented_success_response_parses() {
        let r: SendResponse = serde_json::from_value(json!({"messaging_product": "whatsapp",
            "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA", "message_status": "accepted"}]}))
        .unwrap();
        assert_eq!(r.messages[0].message_status.as_deref(), Some("accepted"));
    }
}
