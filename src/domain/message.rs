//! The outbound message: what a client may ask Herald to send, on which
//! channel, validated at the edge so that a message a provider would reject
//! is a 400 naming the field rather than a failure found later by the consumer.
//! The request-level rules (recipient, channel, exactly one content field,
//! the fields every message may carry) are here; WhatsApp's content rules are
//! in [`super::whatsapp`], SMS encoding and sender rules in [`super::sms`].
//!
//! The request is walked as untyped JSON rather than deserialised into structs,
//! because serde stops at the first error while clients deserve every error at once,
//! each with the path of the field it concerns.

use serde_json::{Map, Value, json};

use super::phone_number::PhoneNumber;
use super::sms::{self, SmsInfo};
use super::validation::{Errors, FieldError, Len, Obj, type_name};
use super::whatsapp::{into_whatsapp_content, validate_content};
use crate::contract::{Channel, Priority};

pub use super::kind::{MAX_CAPTION_CHARS, MAX_TEXT_CHARS, MessageKind};
/// Longest `callbackData` (WhatsApp's `biz_opaque_callback_data`).
pub const MAX_CALLBACK_DATA_CHARS: usize = 512;
/// Largest `metadata` object, serialised, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest SMS text looked at (far beyond any segment limit: a bound on work).
const MAX_SMS_CHARS: usize = 16_384;

/// The content fields of a send request; exactly one must be present.
pub(crate) const CONTENT_FIELDS: [&str; 12] = [
    "message",
    "text",
    "template",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "interactive",
    "location",
    "contacts",
    "reaction",
];
/// Fields every message may carry.
const COMMON_FIELDS: [&str; 10] = [
    "to",
    "channel",
    "callbackData",
    "metadata",
    "from",
    "priority",
    "expiresAt",
    "validitySeconds",
    "sendAt",
    "quietHours",
];

/// Fields only a WhatsApp message may carry.
const WHATSAPP_FIELDS: [&str; 2] = ["replyTo", "fallback"];
/// Fields only an SMS may carry.
const SMS_FIELDS: [&str; 1] = ["sender"];

/// True when `key` is a top-level field of a send request on some channel
/// (what a batch's `defaults` may hold).
pub(crate) fn is_send_field(key: &str) -> bool {
    CONTENT_FIELDS.contains(&key)
        || COMMON_FIELDS.contains(&key)
        || WHATSAPP_FIELDS.contains(&key)
        || SMS_FIELDS.contains(&key)
}

/// Settings that shape validation (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct SendRules {
    /// `SMS_MAX_SEGMENTS`: the longest SMS accepted, in segments.
    pub sms_max_segments: usize,
    /// `SCHEDULE_MAX_DAYS`: the furthest `sendAt`.
    pub schedule_max_days: u32,
}

impl Default for SendRules {
    fn default() -> Self {
        Self {
            sms_max_segments: 10,
            schedule_max_days: super::schedule::DEFAULT_MAX_DAYS,
        }
    }
}

/// A send request that passed validation: the code downstream trusts it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// The recipient.
    pub to: PhoneNumber,
    /// The channel it goes on.
    pub channel: Channel,
    /// The message type.
    pub kind: MessageKind,
    /// The message object the envelope carries: for WhatsApp, the Cloud API
    /// message object without `messaging_product` and `to`
    /// (`{"type": "text", "text": {...}}`); for SMS,
    /// `{"type": "text", "text": {"body"}, "sender"?}`.
    pub content: Value,
    /// WhatsApp message id to quote (`context.message_id`).
    pub reply_to: Option<String>,
    /// Opaque data echoed back in status events (`biz_opaque_callback_data`).
    pub callback_data: Option<String>,
    /// The client's own data, carried through untouched.
    pub metadata: Map<String, Value>,
    /// What an SMS costs (the `sms` object of the `202`).
    pub sms: Option<SmsInfo>,
    /// The SMS to send instead when WhatsApp cannot reach the person.
    pub fallback: Option<Fallback>,
    /// The sender asked for: `from` (a WhatsApp `phone_number_id` or an SMS
    /// sender), or an SMS's `sender`; the gateway checks it is the tenant's.
    pub from: Option<Sender>,
    /// `priority`, when given.
    pub priority: Option<Priority>,
    /// When it is no longer worth sending (`expiresAt`, or now plus
    /// `validitySeconds`), Unix ms.
    pub expires_at_ms: Option<i64>,
    /// `sendAt`, when it is in the future, Unix ms.
    pub send_at_ms: Option<i64>,
    /// `quietHours`, when given.
    pub quiet_hours: Option<super::schedule::QuietHours>,
}

/// The sender a request names, with the field that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The sender.
    pub value: String,
    /// `from` or `sender`.
    pub field: &'static str,
}

/// A WhatsApp message's SMS fallback, sent under the same message id when
/// WhatsApp fails with a code meaning the person cannot be reached there now
/// (`unreachable_on_whatsapp` in `channels::whatsapp::error`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// The fallback's channel (always SMS today).
    pub channel: Channel,
    /// The SMS message object, shaped as an SMS envelope's `message`.
    pub content: Value,
    /// What it costs.
    pub sms: SmsInfo,
}

/// A send request that failed validation, with every field error found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} invalid field(s)", .0.len())]
pub struct ValidationError(pub Vec<FieldError>);

impl TryFrom<Value> for OutboundMessage {
    type Error = ValidationError;

    /// Validates with the default [`SendRules`].
    fn try_from(body: Value) -> Result<Self, Self::Error> {
        Self::validate(body, &SendRules::default())
    }
}

/// The SMS message object of an envelope: `{"type": "text", "text": {"body"}, "sender"?}`.
fn sms_content(body: &str, sender: Option<&str>) -> Value {
    let mut content = json!({"type": "text", "text": {"body": body}});
    if let Some(sender) = sender {
        content["sender"] = Value::from(sender);
    }
    content
}

/// Checks an SMS text at `path`: a non-empty string within `SMS_MAX_SEGMENTS`.
fn check_sms_text(
    value: Option<&Value>,
    path: &str,
    rules: &SendRules,
    errors: &mut Errors,
) -> Option<SmsInfo> {
    let Some(value) = value else {
        errors.add(path, "is required: the SMS text");
        return None;
    };
    let text = super::validation::check_str(value, path, Len::upto(MAX_SMS_CHARS), errors)?;
    let info = sms::analyze(text);
    if info.segments > rules.sms_max_segments {
        errors.add(
            path,
            format!(
                "needs {} {} segments, over the limit of {} (SMS_MAX_SEGMENTS)",
                info.segments,
                match info.encoding {
                    sms::Encoding::Gsm7 => "GSM-7",
                    sms::Encoding::Ucs2 => "UCS-2",
                },
                rules.sms_max_segments
            ),
        );
        return None;
    }
    Some(info)
}

/// Checks an optional sender id at `path`.
fn check_sender<'a>(value: Option<&'a Value>, path: &str, errors: &mut Errors) -> Option<&'a str> {
    let sender = super::validation::check_str(value?, path, Len::upto(64), errors)?;
    match sms::sender_problem(sender) {
        Some(problem) => {
            errors.add(path, problem);
            None
        }
        None => Some(sender),
    }
}

/// Validates `fallback`: `{"channel": "sms", "message", "sender"?}`, like an SMS.
fn check_fallback(value: &Value, rules: &SendRules, errors: &mut Errors) -> Option<Fallback> {
    let f = Obj::at(value, "fallback".into(), errors)?;
    f.deny_unknown(&["channel", "message", "sender"], errors);
    match f.get("channel") {
        Some(Value::String(c)) if c == "sms" => {}
        None => errors.add("fallback.channel", "is required: \"sms\""),
        Some(_) => errors.add(
            "fallback.channel",
            "must be \"sms\" (the only fallback channel)",
        ),
    }
    let info = check_sms_text(f.get("message"), "fallback.message", rules, errors);
    let sender = check_sender(f.get("sender"), "fallback.sender", errors);
    let body = f.get("message").and_then(Value::as_str)?;
    Some(Fallback {
        channel: Channel::Sms,
        content: sms_content(body, sender),
        sms: info?,
    })
}

/// What the checks of a send request found, kept until its parts are moved
/// into the envelope.
struct Checked {
    to: Option<PhoneNumber>,
    channel: Channel,
    /// The content field to send, when exactly one usable field was found.
    content_field: Option<&'static str>,
    sms: Option<SmsInfo>,
    sender: Option<String>,
    from: Option<Sender>,
    priority: Option<Priority>,
    expires_at_ms: Option<i64>,
    send_at_ms: Option<i64>,
    quiet_hours: Option<super::schedule::QuietHours>,
    fallback: Option<Fallback>,
    /// Whether `replyTo` / `callbackData` hold a valid string to carry.
    reply_to: bool,
    callback_data: bool,
}

/// Runs every check of a send request, in the order its errors are listed:
/// channel, field names, recipient, content, fallback, envelope fields.
fn check_request(map: &Map<String, Value>, rules: &SendRules, errors: &mut Errors) -> Checked {
    let root = Obj {
        map,
        path: String::new(),
    };
    let channel = check_channel(&root, errors);
    check_field_names(&root, channel, errors);
    let to = check_recipient(&root, errors);
    let (content_field, sms, sender) = match channel {
        Channel::Sms => {
            let (sms, sender) = check_sms_content(&root, rules, errors);
            (Some("message"), sms, sender.map(str::to_owned))
        }
        Channel::Whatsapp => (check_whatsapp_content(&root, errors), None, None),
    };
    let fallback = match (channel, root.get("fallback")) {
        (Channel::Whatsapp, Some(f)) => check_fallback(f, rules, errors),
        _ => None,
    };
    let reply_to = root
        .optional_str("replyTo", Len::upto(512), errors)
        .is_some();
    let callback_data = root
        .optional_str(
            "callbackData",
            Len::optional_upto(MAX_CALLBACK_DATA_CHARS),
            errors,
        )
        .is_some();
    check_metadata(&root, errors);
    let from = check_from(&root, channel, sender.as_deref(), errors);
    let priority = check_priority(&root, errors);
    let now = crate::clock::now_ms();
    let send_at_ms = super::schedule::check_send_at(&root, now, rules.schedule_max_days, errors);
    let quiet_hours = super::schedule::check_quiet_hours(&root, errors);
    let expires_at_ms = super::expiry::check_expiry(&root, now, send_at_ms, errors);
    Checked {
        to,
        channel,
        content_field,
        sms,
        sender,
        from,
        priority,
        expires_at_ms,
        send_at_ms,
        quiet_hours,
        fallback,
        reply_to,
        callback_data,
    }
}

/// `from`: a WhatsApp `phone_number_id` (digits), or an SMS sender by the
/// sender rules; on an SMS it must agree with `sender` when both are given.
/// Without `from`, an SMS's `sender`.
fn check_from(
    root: &Obj<'_>,
    channel: Channel,
    sender: Option<&str>,
    errors: &mut Errors,
) -> Option<Sender> {
    let from = root.optional_str("from", Len::upto(64), errors);
    let problem = from.and_then(|f| match channel {
        Channel::Whatsapp => (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
            .then_some("must be a WhatsApp phone_number_id (digits)"),
        Channel::Sms => sms::sender_problem(f.trim_start_matches('+')),
    });
    if let Some(problem) = problem {
        errors.add("from", problem);
        return None;
    }
    match (from, sender) {
        (Some(f), Some(s)) if f.trim_start_matches('+') != s.trim_start_matches('+') => {
            errors.add(
                "from",
                "names another sender than `sender`: give one of them",
            );
            None
        }
        (Some(f), _) => Some(Sender {
            value: f.to_owned(),
            field: "from",
        }),
        (None, Some(s)) => Some(Sender {
            value: s.to_owned(),
            field: "sender",
        }),
        (None, None) => None,
    }
}

/// `priority`: `high`, `normal` or `bulk`.
fn check_priority(root: &Obj<'_>, errors: &mut Errors) -> Option<Priority> {
    let value = root.get("priority")?;
    let priority = value.as_str().and_then(Priority::from_name);
    if priority.is_none() {
        errors.add(
            "priority",
            format!("must be \"high\", \"normal\" or \"bulk\", found {value}"),
        );
    }
    priority
}

/// The `channel` field: WhatsApp when absent, else `"whatsapp"` or `"sms"`.
fn check_channel(root: &Obj<'_>, errors: &mut Errors) -> Channel {
    match root.get("channel") {
        None => Channel::Whatsapp,
        Some(Value::String(s)) if s == "whatsapp" => Channel::Whatsapp,
        Some(Value::String(s)) if s == "sms" => Channel::Sms,
        Some(other) => {
            errors.add(
                "channel",
                format!("must be \"whatsapp\" (the default) or \"sms\", found {other}"),
            );
            Channel::Whatsapp
        }
    }
}

/// Rejects top-level fields that are unknown, or that belong to the other channel.
fn check_field_names(root: &Obj<'_>, channel: Channel, errors: &mut Errors) {
    let (own, other_channel): (&[&str], &[&str]) = match channel {
        Channel::Whatsapp => (&WHATSAPP_FIELDS, &SMS_FIELDS),
        Channel::Sms => (&SMS_FIELDS, &WHATSAPP_FIELDS),
    };
    for key in root.map.keys() {
        let key = key.as_str();
        if other_channel.contains(&key) {
            errors.add(
                key,
                format!("is not available for channel {}", channel.as_str()),
            );
        } else if !CONTENT_FIELDS.contains(&key)
            && !COMMON_FIELDS.contains(&key)
            && !own.contains(&key)
        {
            errors.add(key, "unknown field");
        }
    }
}

/// The required `to` field: a string holding a valid phone number.
fn check_recipient(root: &Obj<'_>, errors: &mut Errors) -> Option<PhoneNumber> {
    match root.get("to") {
        None => {
            errors.add("to", "is required");
            None
        }
        Some(Value::String(s)) => match PhoneNumber::parse(s.as_str()) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.add("to", e.to_string());
                None
            }
        },
        Some(other) => {
            errors.add(
                "to",
                format!("must be a string, found {}", type_name(other)),
            );
            None
        }
    }
}

/// The content fields present in the request, in [`CONTENT_FIELDS`] order.
fn present_content_fields(root: &Obj<'_>) -> Vec<&'static str> {
    CONTENT_FIELDS
        .iter()
        .copied()
        .filter(|f| root.get(f).is_some())
        .collect()
}

/// An SMS's content: only `message`, within the segment limit, and an optional
/// `sender`.
fn check_sms_content<'a>(
    root: &Obj<'a>,
    rules: &SendRules,
    errors: &mut Errors,
) -> (Option<SmsInfo>, Option<&'a str>) {
    for f in present_content_fields(root)
        .iter()
        .filter(|f| **f != "message")
    {
        errors.add(
            *f,
            "is not available for channel sms: an SMS is plain text in `message`",
        );
    }
    let sms = check_sms_text(root.get("message"), "message", rules, errors);
    let sender = check_sender(root.get("sender"), "sender", errors);
    (sms, sender)
}

/// A WhatsApp message's content: exactly one content field, valid for its
/// kind; returns that field.
fn check_whatsapp_content(root: &Obj<'_>, errors: &mut Errors) -> Option<&'static str> {
    match present_content_fields(root).as_slice() {
        [one] => {
            validate_content(one, root, errors);
            Some(*one)
        }
        [] => {
            errors.add(
                "message",
                format!(
                    "a message needs exactly one content field: {}",
                    CONTENT_FIELDS.join(", ")
                ),
            );
            None
        }
        many => {
            for f in many {
                errors.add(
                    *f,
                    format!(
                        "only one content field is allowed, found {}",
                        many.join(", ")
                    ),
                );
            }
            None
        }
    }
}

/// The optional `metadata`: an object of at most [`MAX_METADATA_BYTES`] serialised.
fn check_metadata(root: &Obj<'_>, errors: &mut Errors) {
    let Some(meta) = root.get("metadata") else {
        return;
    };
    match meta {
        Value::Object(_) => {
            let size = serde_json::to_vec(meta)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_METADATA_BYTES {
                errors.add(
                    "metadata",
                    format!("must be at most {MAX_METADATA_BYTES} bytes serialised, found {size}"),
                );
            }
        }
        other => errors.add(
            "metadata",
            format!("must be an object, found {}", type_name(other)),
        ),
    }
}

/// Removes `key` from `map` when it holds a string, and returns that string.
fn take_string(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.remove(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

impl OutboundMessage {
    /// Validates a parsed request body under `rules` and moves its parts into
    /// the envelope's shape without copying the larger strings. The one
    /// validation path of single sends and batch entries.
    pub fn validate(body: Value, rules: &SendRules) -> Result<Self, ValidationError> {
        let mut errors = Errors::default();
        let Value::Object(map) = body else {
            errors.add(
                "",
                format!(
                    "the request body must be a JSON object, found {}",
                    type_name(&body)
                ),
            );
            return Err(ValidationError(errors.into_vec()));
        };
        let mut checked = check_request(&map, rules, &mut errors);
        let (Some(to), Some(field), true) =
            (checked.to.take(), checked.content_field, errors.is_empty())
        else {
            return Err(ValidationError(errors.into_vec()));
        };
        Ok(Self::assemble(map, to, field, checked))
    }

    /// Moves the parts of a request that passed every check into the
    /// envelope's shape: the content field, `replyTo`, `callbackData` and
    /// `metadata` are taken out of `map`, not copied.
    fn assemble(
        mut map: Map<String, Value>,
        to: PhoneNumber,
        field: &'static str,
        checked: Checked,
    ) -> Self {
        let kind = MessageKind::from_field(field);
        let raw = map
            .remove(field)
            .expect("validated content field is present");
        let content = match checked.channel {
            Channel::Whatsapp => into_whatsapp_content(kind, field, raw),
            Channel::Sms => {
                sms_content(raw.as_str().unwrap_or_default(), checked.sender.as_deref())
            }
        };
        Self {
            to,
            channel: checked.channel,
            kind,
            content,
            reply_to: if checked.reply_to {
                take_string(&mut map, "replyTo")
            } else {
                None
            },
            callback_data: if checked.callback_data {
                take_string(&mut map, "callbackData")
            } else {
                None
            },
            metadata: match map.remove("metadata") {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            },
            sms: checked.sms,
            fallback: checked.fallback,
            from: checked.from,
            priority: checked.priority,
            expires_at_ms: checked.expires_at_ms,
            send_at_ms: checked.send_at_ms,
            quiet_hours: checked.quiet_hours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<OutboundMessage, Vec<FieldError>> {
        OutboundMessage::try_from(body).map_err(|e| e.0)
    }

    /// The fields named in the errors of an invalid body.
    fn error_fields(body: Value) -> Vec<String> {
        parse(body)
            .expect_err("body should be invalid")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    const TO: &str = "+14155550123";

    #[test]
    fn shorthand_message_becomes_a_whatsapp_text() {
        let m = parse(json!({"to": TO, "message": "Hello"})).unwrap();
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(
            m.content,
            json!({"type": "text", "text": {"body": "Hello", "preview_url": false}})
        );
        assert_eq!(m.to.as_str(), TO);
    }

    #[test]
    fn herald_camel_case_fields_become_whatsapp_snake_case() {
        let m = parse(json!({"to": TO, "text": {"body": "see https://x.io", "previewUrl": true}}))
            .unwrap();
        assert_eq!(
            m.content["text"],
            json!({"body": "see https://x.io", "preview_url": true})
        );
        let m =
            parse(json!({"to": TO, "reaction": {"messageId": "wamid.X", "emoji": "👍"}})).unwrap();
        assert_eq!(
            m.content,
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}})
        );
    }

    #[test]
    fn template_language_code_becomes_a_language_object() {
        let m = parse(json!({"to": TO, "template": {"name": "order_update", "language": "en_US"}}))
            .unwrap();
        assert_eq!(
            m.content["template"]["language"],
            json!({"policy": "deterministic", "code": "en_US"})
        );
    }

    #[test]
    fn optional_envelope_fields_are_carried() {
        let m = parse(
            json!({"to": TO, "message": "hi", "replyTo": "wamid.A", "callbackData": "order-42",
            "metadata": {"tenant": "acme", "n": [1, 2]}}),
        )
        .unwrap();
        assert_eq!(m.reply_to.as_deref(), Some("wamid.A"));
        assert_eq!(m.callback_data.as_deref(), Some("order-42"));
        assert_eq!(
            Value::Object(m.metadata),
            json!({"tenant": "acme", "n": [1, 2]})
        );
    }

    /// Every content kind accepts the shape Meta documents.
    #[test]
    fn valid_bodies_of_every_kind_are_accepted() {
        let bodies = [
            json!({"to": TO, "message": "x".repeat(4096)}),
            json!({"to": TO, "text": {"body": "Hello"}}),
            json!({"to": TO, "image": {"link": "https://example.com/a.jpg", "caption": "c"}}),
            json!({"to": TO, "image": {"id": "1234567890"}}),
            json!({"to": TO, "video": {"link": "https://example.com/v.mp4"}}),
            json!({"to": TO, "audio": {"id": "99"}}),
            json!({"to": TO, "document": {"id": "99", "caption": "Invoice", "filename": "invoice.pdf"}}),
            json!({"to": TO, "sticker": {"link": "https://example.com/s.webp"}}),
            json!({"to": TO, "location": {"latitude": 37.758056, "longitude": -122.425332, "name": "META HQ", "address": "1 Hacker Way"}}),
            json!({"to": TO, "reaction": {"messageId": "wamid.HBgLM", "emoji": ""}}),
            json!({"to": TO, "contacts": [{"name": {"formatted_name": "Ana Lima", "first_name": "Ana"},
                "phones": [{"phone": "+5511987654321", "type": "WORK"}], "birthday": "1990-02-28",
                "addresses": [{"street": "1 Hacker Way", "city": "Menlo Park", "type": "WORK"}], "org": {"company": "Meta"}}]}),
            json!({"to": TO, "template": {"name": "order_update", "language": {"code": "pt_BR"}, "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/i.jpg"}}]},
                {"type": "body", "parameters": [
                    {"type": "text", "text": "Ana"},
                    {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
                    {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977"}}]},
                {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "YES"}]},
                {"type": "button", "sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "order-123"}]}]}}),
            json!({"to": TO, "interactive": {"type": "button", "header": {"type": "text", "text": "Hdr"},
                "body": {"text": "Pick one"}, "footer": {"text": "f"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "Yes"}},
                                       {"type": "reply", "reply": {"id": "b", "title": "No"}}]}}}),
            json!({"to": TO, "interactive": {"type": "list", "body": {"text": "Menu"},
                "action": {"button": "Choose", "sections": [
                    {"title": "Mains", "rows": [{"id": "r1", "title": "Soup", "description": "Hot"}]},
                    {"title": "Sides", "rows": [{"id": "r2", "title": "Bread"}]}]}}}),
            json!({"to": TO, "interactive": {"type": "cta_url", "header": {"type": "image", "image": {"link": "https://example.com/i.png"}},
                "body": {"text": "Tickets"}, "action": {"name": "cta_url", "parameters": {"display_text": "See Dates", "url": "https://example.com/x"}}}}),
        ];
        for body in bodies {
            if let Err(e) = parse(body.clone()) {
                panic!("{body} should be valid, got {e:?}");
            }
        }
    }

    /// Each invalid body names exactly the fields at fault.
    #[test]
    fn an_expiry_is_a_future_time_or_a_validity_within_35_days() {
        let now = crate::clock::now_ms();
        let m = parse(json!({"to": TO, "message": "hi", "validitySeconds": 600})).unwrap();
        let at = m.expires_at_ms.unwrap();
        assert!((now + 600_000..now + 610_000).contains(&at), "{at}");
        let m = parse(json!({"to": TO, "message": "hi", "expiresAt": "2099-01-01T00:00:00+01:00"}));
        assert_eq!(error_fields_of(m), ["expiresAt"], "over 35 days ahead");
        let soon = chrono::Utc::now() + chrono::Duration::hours(2);
        let m = parse(json!({"to": TO, "message": "hi", "expiresAt": soon.to_rfc3339()})).unwrap();
        assert_eq!(m.expires_at_ms, Some(soon.timestamp_millis()));
        for (body, field) in [
            (
                json!({"to": TO, "message": "hi", "expiresAt": "2020-01-01T00:00:00Z"}),
                "expiresAt",
            ),
            (
                json!({"to": TO, "message": "hi", "expiresAt": "tomorrow"}),
                "expiresAt",
            ),
            (
                json!({"to": TO, "message": "hi", "expiresAt": "2026-12-04T18:00:00"}),
                "expiresAt",
            ),
            (
                json!({"to": TO, "message": "hi", "validitySeconds": 0}),
                "validitySeconds",
            ),
            (
                json!({"to": TO, "message": "hi", "validitySeconds": 3_024_001}),
                "validitySeconds",
            ),
            (
                json!({"to": TO, "message": "hi", "validitySeconds": "60"}),
                "validitySeconds",
            ),
            (
                json!({"to": TO, "message": "hi", "validitySeconds": 60, "expiresAt": soon.to_rfc3339()}),
                "validitySeconds",
            ),
        ] {
            assert_eq!(error_fields_of(parse(body.clone())), [field], "{body}");
        }
    }

    fn error_fields_of(result: Result<OutboundMessage, Vec<FieldError>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn invalid_bodies_name_the_fields_at_fault() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!([]), vec![""]),
            (json!({"message": "hi"}), vec!["to"]),
            (json!({"to": 14155550123u64, "message": "hi"}), vec!["to"]),
            (
                json!({"to": "+1 415 555 0123", "message": "hi"}),
                vec!["to"],
            ),
            (json!({"to": TO}), vec!["message"]),
            (json!({"to": TO, "mesage": "hi"}), vec!["mesage", "message"]),
            (
                json!({"to": TO, "message": "hi", "text": {"body": "hi"}}),
                vec!["message", "text"],
            ),
            (json!({"to": TO, "message": ""}), vec!["message"]),
            (json!({"to": TO, "message": "   "}), vec!["message"]),
            (
                json!({"to": TO, "message": "x".repeat(4097)}),
                vec!["message"],
            ),
            (json!({"to": TO, "message": 5}), vec!["message"]),
            (
                json!({"to": TO, "text": {"body": "hi", "preview_url": true}}),
                vec!["text.preview_url"],
            ),
            (
                json!({"to": TO, "text": {"previewUrl": "yes"}}),
                vec!["text.body", "text.previewUrl"],
            ),
            (json!({"to": TO, "image": {}}), vec!["image"]),
            (
                json!({"to": TO, "image": {"id": "1", "link": "https://a.b/c"}}),
                vec!["image"],
            ),
            (
                json!({"to": TO, "image": {"link": "http://insecure.example/a.jpg"}}),
                vec!["image.link"],
            ),
            (
                json!({"to": TO, "image": {"id": "1", "caption": "c".repeat(1025)}}),
                vec!["image.caption"],
            ),
            (
                json!({"to": TO, "audio": {"id": "1", "caption": "no"}}),
                vec!["audio.caption"],
            ),
            (
                json!({"to": TO, "sticker": {"id": "1", "caption": "no"}}),
                vec!["sticker.caption"],
            ),
            (
                json!({"to": TO, "image": {"id": "1", "filename": "a.jpg"}}),
                vec!["image.filename"],
            ),
            (
                json!({"to": TO, "location": {"latitude": 91, "longitude": 0}}),
                vec!["location.latitude"],
            ),
            (
                json!({"to": TO, "location": {"latitude": "1", "longitude": -181}}),
                vec!["location.latitude", "location.longitude"],
            ),
            (
                json!({"to": TO, "reaction": {"messageId": "wamid.X"}}),
                vec!["reaction.emoji"],
            ),
            (
                json!({"to": TO, "reaction": {"messageId": "", "emoji": "ok"}}),
                vec!["reaction.messageId", "reaction.emoji"],
            ),
            (
                json!({"to": TO, "template": {"name": "Order Update", "language": "english"}}),
                vec!["template.name", "template.language"],
            ),
            (
                json!({"to": TO, "template": {"name": "t"}}),
                vec!["template.language"],
            ),
            (
                json!({"to": TO, "template": {"name": "t", "language": "en", "components": [
                {"type": "footer"},
                {"type": "button", "sub_type": "quick_reply", "index": "10"},
                {"type": "body", "parameters": [{"type": "text"}, {"type": "currency", "currency": {"fallback_value": "$1", "code": "usd", "amount_1000": 1.5}}]}]}}),
                vec![
                    "template.components[0].type",
                    "template.components[1].index",
                    "template.components[2].parameters[0].text",
                    "template.components[2].parameters[1].currency.code",
                    "template.components[2].parameters[1].currency.amount_1000",
                ],
            ),
            (
                json!({"to": TO, "template": {"name": "t", "language": "en", "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "h".repeat(61)}]}]}}),
                vec!["template.components[0].parameters[0].text"],
            ),
            (
                json!({"to": TO, "interactive": {"type": "button", "body": {"text": "b"}, "action": {"buttons": [
                {"type": "reply", "reply": {"id": "a", "title": "This title is far too long"}},
                {"type": "reply", "reply": {"id": "a", "title": "B"}},
                {"type": "reply", "reply": {"id": "c", "title": "C"}},
                {"type": "reply", "reply": {"id": "d", "title": "D"}}]}}}),
                vec!["interactive.action.buttons"],
            ),
            (
                json!({"to": TO, "interactive": {"type": "button", "body": {"text": "b"}, "action": {"buttons": [
                {"type": "reply", "reply": {"id": "a", "title": "This title is far too long"}},
                {"type": "reply", "reply": {"id": "a", "title": "B"}}]}}}),
                vec![
                    "interactive.action.buttons[0].reply.title",
                    "interactive.action.buttons[1].reply.id",
                ],
            ),
            (
                json!({"to": TO, "interactive": {"type": "button", "action": {"buttons": []}}}),
                vec!["interactive.body", "interactive.action.buttons"],
            ),
            (
                json!({"to": TO, "interactive": {"type": "list", "header": {"type": "image", "image": {"id": "1"}}, "body": {"text": "b"},
                "action": {"button": "Choose", "sections": [
                    {"title": "A", "rows": (0..6).map(|i| json!({"id": format!("a{i}"), "title": "t"})).collect::<Vec<_>>()},
                    {"rows": (0..6).map(|i| json!({"id": format!("b{i}"), "title": "t"})).collect::<Vec<_>>()}]}}}),
                vec![
                    "interactive.header.type",
                    "interactive.action.sections[1].title",
                    "interactive.action.sections",
                ],
            ),
            (
                json!({"to": TO, "interactive": {"type": "cta_url", "body": {"text": "b"},
                "action": {"name": "cta_url", "parameters": {"display_text": "x".repeat(21), "url": "example.com"}}}}),
                vec![
                    "interactive.action.parameters.display_text",
                    "interactive.action.parameters.url",
                ],
            ),
            (
                json!({"to": TO, "interactive": {"type": "carousel", "body": {"text": "b"}, "action": {}}}),
                vec!["interactive.type"],
            ),
            (json!({"to": TO, "contacts": []}), vec!["contacts"]),
            (
                json!({"to": TO, "contacts": [{"name": {}, "birthday": "28/02/1990"}]}),
                vec!["contacts[0].name.formatted_name", "contacts[0].birthday"],
            ),
            (
                json!({"to": TO, "message": "hi", "callbackData": "c".repeat(513)}),
                vec!["callbackData"],
            ),
            (
                json!({"to": TO, "message": "hi", "metadata": "tenant=acme"}),
                vec!["metadata"],
            ),
            (
                json!({"to": TO, "message": "hi", "metadata": {"blob": "x".repeat(5000)}}),
                vec!["metadata"],
            ),
            (
                json!({"to": TO, "message": "hi", "replyTo": 7}),
                vec!["replyTo"],
            ),
        ];
        for (body, expected) in cases {
            let mut fields = error_fields(body.clone());
            let mut expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
            fields.sort();
            expected.sort();
            assert_eq!(fields, expected, "body: {body}");
        }
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let m = parse(json!({"to": TO, "message": "hi", "replyTo": null, "callbackData": null, "metadata": null})).unwrap();
        assert_eq!(m.reply_to, None);
        assert!(m.metadata.is_empty());
    }

    #[test]
    fn null_content_is_not_content() {
        assert_eq!(
            error_fields(json!({"to": TO, "message": null})),
            vec!["message"]
        );
    }
}
