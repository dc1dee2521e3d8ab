//! WhatsApp content: the content fields of a send request checked against the
//! limits the WhatsApp Cloud API enforces, and moved into WhatsApp's own
//! message object. The request-level rules (recipient, channel, one content
//! field, the envelope fields) are in `message.rs`.
//!
//! This file dispatches on the content field and holds the small kinds (text,
//! reaction, location); media objects are checked in `media.rs`, templates in
//! `template.rs`, interactive messages in `interactive.rs` and contact cards
//! in `contacts.rs`.

mod contacts;
mod interactive;
mod media;
mod template;

use serde_json::{Map, Value, json};

use super::kind::{MAX_TEXT_CHARS, MessageKind};
use super::validation::{Errors, Len, Obj, check_str};
use contacts::validate_contacts;
use interactive::validate_interactive;
use media::validate_media;
use template::validate_template;

/// Moves a validated content field into WhatsApp's message object, renaming
/// Herald's camelCase fields to WhatsApp's snake_case where they differ.
pub(crate) fn into_whatsapp_content(kind: MessageKind, field: &str, raw: Value) -> Value {
    let body = match (field, raw) {
        ("message", Value::String(body)) => json!({ "body": body, "preview_url": false }),
        ("text", Value::Object(mut t)) => {
            let preview = t
                .remove("previewUrl")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            json!({ "body": t.remove("body").unwrap_or_default(), "preview_url": preview })
        }
        ("reaction", Value::Object(mut r)) => {
            json!({ "message_id": r.remove("messageId").unwrap_or_default(), "emoji": r.remove("emoji").unwrap_or_default() })
        }
        ("template", Value::Object(mut t)) => {
            let language = match t.remove("language") {
                Some(Value::String(code)) => json!({ "policy": "deterministic", "code": code }),
                Some(Value::Object(mut l)) => {
                    l.entry("policy")
                        .or_insert_with(|| Value::from("deterministic"));
                    Value::Object(l)
                }
                _ => Value::Null,
            };
            t.insert("language".to_owned(), language);
            Value::Object(t)
        }
        (_, Value::Object(mut m)) => {
            m.retain(|_, v| !v.is_null());
            Value::Object(m)
        }
        (_, other) => other,
    };
    let mut content = Map::with_capacity(2);
    content.insert("type".to_owned(), Value::from(kind.as_str()));
    content.insert(kind.as_str().to_owned(), body);
    Value::Object(content)
}

pub(crate) fn validate_content(field: &str, root: &Obj<'_>, errors: &mut Errors) {
    let value = root.get(field).expect("caller checked presence");
    match field {
        "message" => {
            check_str(value, "message", Len::upto(MAX_TEXT_CHARS), errors);
        }
        "text" => validate_text(value, errors),
        "image" | "video" | "document" => validate_media(value, field, true, errors),
        "audio" | "sticker" => validate_media(value, field, false, errors),
        "location" => validate_location(value, errors),
        "reaction" => validate_reaction(value, errors),
        "template" => validate_template(value, errors),
        "interactive" => validate_interactive(value, errors),
        "contacts" => validate_contacts(value, errors),
        _ => unreachable!("CONTENT_FIELDS and this match list the same fields"),
    }
}

/// A text object: a required `body` and an optional `previewUrl`.
fn validate_text(value: &Value, errors: &mut Errors) {
    if let Some(t) = Obj::at(value, "text".into(), errors) {
        t.deny_unknown(&["body", "previewUrl"], errors);
        t.required_str("body", Len::upto(MAX_TEXT_CHARS), errors);
        t.optional_bool("previewUrl", errors);
    }
}

/// A reaction: the `messageId` reacted to and one `emoji` (or none, to remove it).
fn validate_reaction(value: &Value, errors: &mut Errors) {
    let Some(r) = Obj::at(value, "reaction".into(), errors) else {
        return;
    };
    r.deny_unknown(&["messageId", "emoji"], errors);
    r.required_str("messageId", Len::upto(512), errors);
    // An empty emoji removes an earlier reaction; a sequence such as a
    // family emoji spans several code points, hence the headroom.
    match r.get("emoji") {
        None => errors.add(
            "reaction.emoji",
            "is required (an empty string removes a reaction)",
        ),
        Some(e) => {
            if let Some(s) = check_str(e, "reaction.emoji", Len::optional_upto(16), errors)
                && s.chars()
                    .any(|c| c.is_ascii_alphabetic() || c.is_whitespace())
            {
                errors.add("reaction.emoji", "must be a single emoji");
            }
        }
    }
}

fn validate_location(value: &Value, errors: &mut Errors) {
    let Some(l) = Obj::at(value, "location".into(), errors) else {
        return;
    };
    l.deny_unknown(&["latitude", "longitude", "name", "address"], errors);
    l.required_number("latitude", -90.0, 90.0, errors);
    l.required_number("longitude", -180.0, 180.0, errors);
    l.optional_str("name", Len::upto(1000), errors);
    l.optional_str("address", Len::upto(1000), errors);
}
