//! What Meta POSTs to `/webhooks/whatsapp`: the signature check and the
//! reading of `entry[].changes[].value` into status updates and inbound
//! messages (`docs/providers/whatsapp.md`, "Webhooks", has Meta's rules).
//!
//! The payload is read leniently: a change of another kind, a status Herald
//! does not track, an unknown field or an entry missing its id is skipped (and
//! counted), never a reason to refuse the batch — Meta would retry it for
//! seven days.

use std::collections::HashMap;

use http::HeaderMap;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::channels::WebhookContent;
use crate::channels::inbound::{
    HandshakeDoc, InboundWebhook, Proof, Refusal, WebhookRoute, signature_header,
};
use crate::channels::unreadable::UnreadableWebhook;
use crate::config::Secret;
use crate::events::signing;
use crate::status::{Entry, Inbound, Status, StatusError, Update};

/// The header Meta signs with: `sha256=<hex HMAC-SHA256(raw body, app secret)>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// `/webhooks/whatsapp`: where Meta posts, and its subscription handshake.
pub static ROUTE: WebhookRoute = WebhookRoute {
    path: "/webhooks/whatsapp",
    source: "whatsapp",
    operation_id: "receiveWhatsAppWebhook",
    description: "`POST /webhooks/whatsapp`: statuses and inbound messages, signed with\n`WHATSAPP_APP_SECRET`.",
    signature_header: "X-Hub-Signature-256",
    signature_description: "sha256=<hex HMAC-SHA256 of the body with WHATSAPP_APP_SECRET>",
    signature_required: true,
    handshake: Some(HandshakeDoc {
        operation_id: "verifyWhatsAppWebhook",
        description: "`GET /webhooks/whatsapp`: Meta's subscription handshake. The raw\n`hub.challenge` comes back as text when the mode is `subscribe` and the\ntoken is `WHATSAPP_VERIFY_TOKEN`; anything else is `403`.",
        query: &["hub.mode", "hub.verify_token", "hub.challenge"],
        not_configured: "WHATSAPP_VERIFY_TOKEN is not set",
    }),
};

/// Meta's webhook: signed with `WHATSAPP_APP_SECRET`, subscribed with
/// `WHATSAPP_VERIFY_TOKEN`.
#[derive(Debug)]
pub struct WhatsAppWebhook {
    app_secret: Option<Secret>,
    verify_token: Option<Secret>,
}

impl WhatsAppWebhook {
    /// The webhook with these secrets (either may be unset: its part is off).
    pub fn new(app_secret: Option<Secret>, verify_token: Option<Secret>) -> Self {
        Self {
            app_secret,
            verify_token,
        }
    }
}

impl InboundWebhook for WhatsAppWebhook {
    fn route(&self) -> &'static WebhookRoute {
        &ROUTE
    }

    fn is_configured(&self) -> bool {
        self.app_secret.is_some()
    }

    fn check_headers<'a>(&self, headers: &'a HeaderMap) -> Result<Proof<'a>, Refusal> {
        if self.app_secret.is_none() {
            return Err(Refusal::NotConfigured);
        }
        signature_header(headers, SIGNATURE_HEADER, ROUTE.signature_header).map(Proof::Signature)
    }

    fn check_body(&self, proof: &Proof<'_>, body: &[u8]) -> Result<(), Refusal> {
        match (proof, &self.app_secret) {
            (Proof::Signature(header), Some(secret))
                if signature_matches(secret.expose().as_bytes(), body, header) =>
            {
                Ok(())
            }
            _ => Err(Refusal::Invalid),
        }
    }

    fn read(&self, body: &[u8]) -> Result<WebhookContent, UnreadableWebhook> {
        read(body)
    }

    /// The raw `hub.challenge` when the mode is `subscribe` and the token
    /// is `WHATSAPP_VERIFY_TOKEN` (compared in constant time).
    fn handshake(&self, query: &HashMap<String, String>) -> Result<String, Refusal> {
        let expected = self.verify_token.as_ref().ok_or(Refusal::NotConfigured)?;
        let token = query.get("hub.verify_token").map_or("", String::as_str);
        let token_matches: bool = token.as_bytes().ct_eq(expected.expose().as_bytes()).into();
        match query.get("hub.challenge") {
            Some(challenge)
                if query.get("hub.mode").map(String::as_str) == Some("subscribe")
                    && token_matches =>
            {
                Ok(challenge.clone())
            }
            _ => Err(Refusal::Invalid),
        }
    }
}

/// True when `header` (the `X-Hub-Signature-256` value) signs `body` with
/// `app_secret`. The raw bytes are checked first; when they do not match and
/// the body has non-ASCII text, its `\uXXXX`-escaped form is checked too,
/// since Meta documents signing the escaped form.
pub fn signature_matches(app_secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    if signing::verify_hex(app_secret, body, hex) {
        return true;
    }
    match std::str::from_utf8(body) {
        Ok(text) if !text.is_ascii() => {
            signing::verify_hex(app_secret, escape_non_ascii(text).as_bytes(), hex)
        }
        _ => false,
    }
}

/// Writes every non-ASCII character as `\uXXXX` (lower-case hex, UTF-16, so
/// an emoji becomes a surrogate pair), as Meta escapes bodies it signs. In
/// JSON such characters only occur inside strings, where the escape means the
/// same text.
pub fn escape_non_ascii(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// Reads a webhook body. `Err` only when it is not a JSON object at all.
pub fn read(body: &[u8]) -> Result<WebhookContent, UnreadableWebhook> {
    let payload: Value = serde_json::from_slice(body)?;
    if !payload.is_object() {
        return Err(UnreadableWebhook::NotAnObject);
    }
    let mut content = WebhookContent::default();
    for entry in array(&payload, "entry") {
        let waba_id = text(entry, "id");
        for change in array(entry, "changes") {
            let field = text(change, "field");
            if matches!(
                field,
                Some("message_template_status_update" | "message_template_components_update")
            ) {
                let edited = field == Some("message_template_components_update");
                match change
                    .get("value")
                    .and_then(|v| template_status(waba_id?, v, edited))
                {
                    Some(status) => content.template_statuses.push(status),
                    None => content.skipped += 1,
                }
            }
        }
    }
    let values = array(&payload, "entry")
        .iter()
        .flat_map(|entry| array(entry, "changes"))
        .filter(|change| change.get("field").and_then(Value::as_str) == Some("messages"))
        .filter_map(|change| change.get("value"));
    for value in values {
        let receiver = value
            .pointer("/metadata/phone_number_id")
            .and_then(Value::as_str);
        for status in array(value, "statuses") {
            match status_update(status) {
                Some(update) => content.updates.push(update),
                None => content.skipped += 1,
            }
            content.closed_windows.extend(closure(status, receiver));
        }
        let contacts = array(value, "contacts");
        for message in array(value, "messages") {
            match inbound(message, contacts, receiver) {
                Some(i) => content.inbound.push(i),
                None => content.skipped += 1,
            }
        }
        content
            .errors
            .extend(array(value, "errors").iter().cloned());
    }
    Ok(content)
}

/// A `message_template_status_update` change's value: the template
/// (`message_template_name`, `message_template_language`) and its new
/// status (`event`) in the account `entry[].id`; or (`edited`) a
/// `message_template_components_update`'s template, its status unchanged.
fn template_status(
    waba_id: &str,
    value: &Value,
    edited: bool,
) -> Option<crate::templates::StatusChange> {
    Some(crate::templates::StatusChange {
        waba_id: waba_id.to_owned(),
        name: text(value, "message_template_name")?.to_owned(),
        language: text(value, "message_template_language")?.to_owned(),
        status: if edited {
            None
        } else {
            Some(text(value, "event")?.to_ascii_uppercase())
        },
        at_ms: crate::clock::now_ms(),
    })
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// Meta's `timestamp`: a string of Unix seconds (a number is taken too).
fn timestamp_ms(value: &Value) -> Option<i64> {
    let seconds = match value.get("timestamp")? {
        Value::String(s) => s.parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    seconds.checked_mul(1000)
}

/// The Herald status for a WhatsApp status name.
pub fn status_of(name: &str) -> Option<Status> {
    match name {
        "sent" => Some(Status::Sent),
        "delivered" => Some(Status::Delivered),
        "read" | "played" => Some(Status::Read),
        "failed" => Some(Status::Failed),
        _ => None,
    }
}

fn status_update(status: &Value) -> Option<Update> {
    let wamid = text(status, "id").filter(|id| !id.is_empty())?;
    let name = text(status, "status")?;
    let herald = status_of(name)?;
    let error = (herald == Status::Failed).then(|| {
        let first = array(status, "errors").first();
        StatusError {
            code: first
                .and_then(|e| e.get("code"))
                .and_then(Value::as_i64)
                .map(Into::into),
            title: first
                .and_then(|e| text(e, "title").or_else(|| text(e, "message")))
                .unwrap_or("failed")
                .to_owned(),
            channel: "whatsapp".into(),
            class: None,
        }
    });
    let error = error.map(|mut e| {
        if e.code
            .as_ref()
            .and_then(|c| c.as_i64())
            .is_some_and(super::error::unreachable_on_whatsapp)
        {
            e.class = Some(crate::status::model::FailureMark::Unreachable);
        }
        e
    });
    Some(Update::Provider {
        provider_message_id: wamid.to_owned(),
        status: herald,
        entry: Entry {
            at_ms: timestamp_ms(status).unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
            channel: Some("whatsapp".into()),
            attempt: None,
            provider_status: Some(name.to_owned()),
            error,
        },
    })
}

/// The window a failed status with 131047 says is closed: the business
/// number the report came for, and the person (`recipient_id`).
fn closure(status: &Value, receiver: Option<&str>) -> Option<crate::window::Closure> {
    let closed = text(status, "status") == Some("failed")
        && array(status, "errors")
            .iter()
            .any(|e| e.get("code").and_then(Value::as_i64) == Some(crate::window::CLOSED_CODE));
    let person = text(status, "recipient_id").filter(|r| !r.is_empty())?;
    closed.then(|| crate::window::Closure {
        number_id: receiver.unwrap_or_default().to_owned(),
        person: format!("+{}", person.trim_start_matches('+')),
        at_ms: timestamp_ms(status).unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
    })
}

fn inbound(message: &Value, contacts: &[Value], receiver: Option<&str>) -> Option<Inbound> {
    let id = text(message, "id").filter(|id| !id.is_empty())?;
    let from = text(message, "from").filter(|f| !f.is_empty())?;
    let contact_name = contacts
        .iter()
        .find(|c| text(c, "wa_id") == Some(from))
        .or_else(|| (contacts.len() == 1).then(|| &contacts[0]))
        .and_then(|c| c.get("profile"))
        .and_then(|p| text(p, "name"))
        .map(str::to_owned);
    Some(Inbound {
        provider_message_id: id.to_owned(),
        channel: "whatsapp".into(),
        from: if from.starts_with('+') {
            from.to_owned()
        } else {
            format!("+{from}")
        },
        to: receiver.map(str::to_owned),
        tenants: Vec::new(),
        contact_name,
        at_ms: timestamp_ms(message).unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
        message: message.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        format!(
            "sha256={}",
            signing::to_hex(&signing::hmac_sha256(secret, &[body]))
        )
    }

    #[test]
    fn signatures_over_the_raw_bytes_and_over_metas_escaped_form() {
        for text in [
            "plain ascii",
            "an @ sign",
            "accents: àéîõü ñ ç",
            "emoji: 👍🏽 🎉",
            r#"quote \" and backslash \\"#,
        ] {
            let body = json!({"entry": [{"text": text}]}).to_string();
            let escaped = escape_non_ascii(&body);
            let (raw, esc) = (body.as_bytes(), escaped.as_bytes());
            // (body received, header sent, key Herald checks with, matches?).
            // Meta signs the escaped form and may send either form.
            let cases = [
                (raw, sign(b"s3cret", raw), &b"s3cret"[..], true),
                (raw, sign(b"s3cret", esc), b"s3cret", true),
                (esc, sign(b"s3cret", esc), b"s3cret", true),
                (raw, sign(b"s3cret", raw), b"other", false),
                (
                    raw,
                    sign(b"s3cret", raw).replace("sha256=", ""),
                    b"s3cret",
                    false,
                ),
            ];
            for (i, (received, header, key, expected)) in cases.into_iter().enumerate() {
                assert_eq!(
                    signature_matches(key, received, &header),
                    expected,
                    "case {i}: {text}"
                );
            }
        }
        assert_eq!(escape_non_ascii("é👍"), "\\u00e9\\ud83d\\udc4d");
        let escaped = escape_non_ascii(r#"{"t":"é👍"}"#);
        assert_eq!(serde_json::from_str::<Value>(&escaped).unwrap()["t"], "é👍");
    }

    #[test]
    fn statuses_map_to_herald_statuses_with_metas_time() {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "messages", "value": {"statuses": [
                {"id": "wamid.A", "status": "sent", "timestamp": "1750263773", "recipient_id": "16505551234",
                 "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"}},
                {"id": "wamid.A", "status": "played", "timestamp": "1750263775"},
                {"id": "wamid.A", "status": "deleted", "timestamp": "1750263776"},
                {"id": "wamid.B", "status": "failed", "timestamp": "1750263777", "errors": [
                    {"code": 131026, "title": "Message undeliverable", "error_data": {"details": "…"}}]},
                {"status": "sent"}
            ], "errors": [{"code": 131000, "title": "Something went wrong"}]}},
            {"field": "message_template_status_update", "value": {"event": "APPROVED"}}
        ]}]});
        let content = read(body.to_string().as_bytes()).unwrap();
        assert_eq!(content.updates.len(), 3);
        assert_eq!(
            content.skipped, 3,
            "deleted, the status without an id, the template update without a name"
        );
        assert!(content.template_statuses.is_empty());
        assert_eq!(content.errors.len(), 1);
        let Update::Provider {
            provider_message_id,
            status,
            entry,
            ..
        } = &content.updates[0]
        else {
            panic!()
        };
        assert_eq!(
            (provider_message_id.as_str(), *status),
            ("wamid.A", Status::Sent)
        );
        assert_eq!(entry.at_ms, 1_750_263_773_000);
        let Update::Provider { status, entry, .. } = &content.updates[1] else {
            panic!()
        };
        assert_eq!(
            (*status, entry.provider_status.as_deref()),
            (Status::Read, Some("played"))
        );
        let Update::Provider { status, entry, .. } = &content.updates[2] else {
            panic!()
        };
        assert_eq!(*status, Status::Failed);
        let error = entry.error.as_ref().unwrap();
        assert_eq!(
            (
                error.code.as_ref().and_then(|c| c.as_i64()),
                error.title.as_str()
            ),
            (Some(131_026), "Message undeliverable")
        );
    }

    #[test]
    fn inbound_messages_carry_the_sender_and_the_untouched_object() {
        let body = json!({"entry": [{"changes": [{"field": "messages", "value": {
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": [
            {"from": "16505551234", "id": "wamid.IN1", "timestamp": "1749416383", "type": "text",
             "text": {"body": "Does it come in another color?"}, "some_new_field": 1},
            {"from": "16505551234", "id": "wamid.IN2", "timestamp": "1749416384", "type": "system",
             "system": {"body": "changed number", "wa_id": "16505550000", "type": "user_changed_number"}},
            {"id": "wamid.IN3", "type": "text"}
        ]}}]}]});
        let content = read(body.to_string().as_bytes()).unwrap();
        assert_eq!(content.inbound.len(), 2);
        assert_eq!(content.skipped, 1, "no sender");
        let first = &content.inbound[0];
        assert_eq!(first.from, "+16505551234");
        assert_eq!(first.contact_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(first.at_ms, 1_749_416_383_000);
        assert_eq!(first.message["some_new_field"], 1);
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused_and_odd_shapes_are_skipped() {
        assert!(matches!(read(b"not json"), Err(UnreadableWebhook::Json(_))));
        assert_eq!(
            read(b"[1,2]").unwrap_err().to_string(),
            "the body is not a JSON object"
        );
        let odd = read(br#"{"entry": "x", "other": 1}"#).unwrap();
        assert_eq!(odd, WebhookContent::default());
        let odd = read(br#"{"entry": [{"changes": [{"field": "messages", "value": {"statuses": [1, "x"]}}]}]}"#).unwrap();
        assert_eq!(odd.skipped, 2);
    }
}
