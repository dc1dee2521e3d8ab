//! The outbound message: what a client may ask Herald to send, validated against
//! the limits the WhatsApp Cloud API enforces, and turned into WhatsApp's own shape.
//!
//! The request is walked as untyped JSON rather than deserialised into structs,
//! because serde stops at the first error while clients deserve every error at once,
//! each with the path of the field it concerns.

use serde_json::{Map, Value, json};

use super::phone_number::PhoneNumber;
use super::validation::{
    Errors, FieldError, Len, Obj, check_str, index, is_http_url, is_https_url, type_name,
};

/// Longest text body WhatsApp accepts.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest media caption WhatsApp accepts.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// Longest `callbackData` (WhatsApp's `biz_opaque_callback_data`).
pub const MAX_CALLBACK_DATA_CHARS: usize = 512;
/// Largest `metadata` object, serialised, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

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
const ENVELOPE_FIELDS: [&str; 4] = ["to", "replyTo", "callbackData", "metadata"];

/// The WhatsApp message types Herald sends; the `type` SNS message attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Template,
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Interactive,
    Location,
    Contacts,
    Reaction,
}

impl MessageKind {
    /// WhatsApp's name for the type, used as the message's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Template => "template",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Interactive => "interactive",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Reaction => "reaction",
        }
    }

    fn from_field(field: &str) -> Self {
        match field {
            "template" => Self::Template,
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" => Self::Audio,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            "interactive" => Self::Interactive,
            "location" => Self::Location,
            "contacts" => Self::Contacts,
            "reaction" => Self::Reaction,
            _ => Self::Text,
        }
    }
}

/// A send request that passed validation: the code downstream trusts it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// The recipient.
    pub to: PhoneNumber,
    /// The message type.
    pub kind: MessageKind,
    /// The WhatsApp Cloud API message object without `messaging_product` and `to`:
    /// `{"type": "text", "text": {...}}`.
    pub content: Value,
    /// WhatsApp message id to quote (`context.message_id`).
    pub reply_to: Option<String>,
    /// Opaque data echoed back in status events (`biz_opaque_callback_data`).
    pub callback_data: Option<String>,
    /// The client's own data, carried through untouched.
    pub metadata: Map<String, Value>,
}

/// A send request that failed validation, with every field error found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} invalid field(s)", .0.len())]
pub struct ValidationError(pub Vec<FieldError>);

impl TryFrom<Value> for OutboundMessage {
    type Error = ValidationError;

    /// Validates a parsed request body and moves its parts into WhatsApp's shape
    /// without copying the strings.
    fn try_from(body: Value) -> Result<Self, Self::Error> {
        let mut errors = Errors::default();
        let Value::Object(mut map) = body else {
            errors.add(
                "",
                format!(
                    "the request body must be a JSON object, found {}",
                    type_name(&body)
                ),
            );
            return Err(ValidationError(errors.into_vec()));
        };
        let root = Obj {
            map: &map,
            path: String::new(),
        };

        for key in root.map.keys() {
            if !CONTENT_FIELDS.contains(&key.as_str()) && !ENVELOPE_FIELDS.contains(&key.as_str()) {
                errors.add(key.clone(), "unknown field");
            }
        }

        let to = match root.get("to") {
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
        };

        let present: Vec<&str> = CONTENT_FIELDS
            .iter()
            .copied()
            .filter(|f| root.get(f).is_some())
            .collect();
        let content_field = match present.as_slice() {
            [one] => Some(*one),
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
        };
        if let Some(field) = content_field {
            validate_content(field, &root, &mut errors);
        }

        let reply_to = root
            .optional_str("replyTo", Len::upto(512), &mut errors)
            .is_some();
        let callback_data = root
            .optional_str(
                "callbackData",
                Len::optional_upto(MAX_CALLBACK_DATA_CHARS),
                &mut errors,
            )
            .is_some();
        if let Some(meta) = root.get("metadata") {
            match meta {
                Value::Object(_) => {
                    let size = serde_json::to_vec(meta)
                        .map(|v| v.len())
                        .unwrap_or(usize::MAX);
                    if size > MAX_METADATA_BYTES {
                        errors.add("metadata", format!("must be at most {MAX_METADATA_BYTES} bytes serialised, found {size}"));
                    }
                }
                other => errors.add(
                    "metadata",
                    format!("must be an object, found {}", type_name(other)),
                ),
            }
        }

        let (Some(to), Some(field), true) = (to, content_field, errors.is_empty()) else {
            return Err(ValidationError(errors.into_vec()));
        };

        let kind = MessageKind::from_field(field);
        let raw = map
            .remove(field)
            .expect("validated content field is present");
        let content = into_whatsapp_content(kind, field, raw);
        let take_string = |map: &mut Map<String, Value>, key: &str| match map.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(Self {
            to,
            kind,
            content,
            reply_to: if reply_to {
                take_string(&mut map, "replyTo")
            } else {
                None
            },
            callback_data: if callback_data {
                take_string(&mut map, "callbackData")
            } else {
                None
            },
            metadata: match map.remove("metadata") {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            },
        })
    }
}

/// Moves a validated content field into WhatsApp's message object, renaming
/// Herald's camelCase fields to WhatsApp's snake_case where they differ.
fn into_whatsapp_content(kind: MessageKind, field: &str, raw: Value) -> Value {
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

fn validate_content(field: &str, root: &Obj<'_>, errors: &mut Errors) {
    let value = root.get(field).expect("caller checked presence");
    match field {
        "message" => {
            check_str(value, "message", Len::upto(MAX_TEXT_CHARS), errors);
        }
        "text" => {
            if let Some(t) = Obj::at(value, "text".into(), errors) {
                t.deny_unknown(&["body", "previewUrl"], errors);
                t.required_str("body", Len::upto(MAX_TEXT_CHARS), errors);
                t.optional_bool("previewUrl", errors);
            }
        }
        "image" | "video" | "document" => validate_media(value, field, true, errors),
        "audio" | "sticker" => validate_media(value, field, false, errors),
        "location" => validate_location(value, errors),
        "reaction" => {
            if let Some(r) = Obj::at(value, "reaction".into(), errors) {
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
                        if let Some(s) =
                            check_str(e, "reaction.emoji", Len::optional_upto(16), errors)
                            && s.chars()
                                .any(|c| c.is_ascii_alphabetic() || c.is_whitespace())
                        {
                            errors.add("reaction.emoji", "must be a single emoji");
                        }
                    }
                }
            }
        }
        "template" => validate_template(value, errors),
        "interactive" => validate_interactive(value, errors),
        "contacts" => validate_contacts(value, errors),
        _ => unreachable!("CONTENT_FIELDS and this match list the same fields"),
    }
}

/// A media object: exactly one of `id` or an `https` `link`; `caption` only where
/// WhatsApp shows one; `filename` only on documents.
fn validate_media(value: &Value, field: &str, captioned: bool, errors: &mut Errors) {
    let Some(m) = Obj::at(value, field.into(), errors) else {
        return;
    };
    let allowed: &[&str] = match field {
        "document" => &["id", "link", "caption", "filename"],
        _ if captioned => &["id", "link", "caption"],
        _ => &["id", "link"],
    };
    m.deny_unknown(allowed, errors);
    validate_media_source(&m, true, errors);
    if captioned {
        m.optional_str("caption", Len::upto(MAX_CAPTION_CHARS), errors);
    }
    if field == "document" {
        m.optional_str("filename", Len::upto(240), errors);
    }
}

/// Exactly one of `id` (an uploaded media id) or `link` (an https URL).
fn validate_media_source(m: &Obj<'_>, https_only: bool, errors: &mut Errors) {
    match (m.get("id"), m.get("link")) {
        (Some(_), Some(_)) => errors.add(m.path.clone(), "give either id or link, not both"),
        (None, None) => errors.add(
            m.path.clone(),
            "needs id (an uploaded media id) or link (an https URL)",
        ),
        (Some(_), None) => {
            m.required_str("id", Len::upto(256), errors);
        }
        (None, Some(_)) => {
            if let Some(link) = m.required_str("link", Len::upto(2048), errors) {
                let ok = if https_only {
                    is_https_url(link)
                } else {
                    is_http_url(link)
                };
                if !ok {
                    errors.add(m.field_path("link"), "must be an absolute https:// URL");
                }
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

const TEMPLATE_COMPONENTS: [&str; 5] =
    ["header", "body", "button", "carousel", "limited_time_offer"];
const BUTTON_SUB_TYPES: [&str; 8] = [
    "quick_reply",
    "url",
    "catalog",
    "flow",
    "copy_code",
    "voice_call",
    "mpm",
    "order_details",
];
const PARAMETER_TYPES: [&str; 13] = [
    "text",
    "currency",
    "date_time",
    "image",
    "document",
    "video",
    "location",
    "payload",
    "action",
    "coupon_code",
    "limited_time_offer",
    "product",
    "order_status",
];

/// A template: `name`, `language` (a code such as `en_US`, or WhatsApp's
/// `{code, policy}` object) and WhatsApp's `components` array.
fn validate_template(value: &Value, errors: &mut Errors) {
    let Some(t) = Obj::at(value, "template".into(), errors) else {
        return;
    };
    t.deny_unknown(&["name", "language", "components"], errors);
    if let Some(name) = t.required_str("name", Len::upto(512), errors)
        && !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        errors.add(
            "template.name",
            "must contain only lowercase letters, digits and underscores",
        );
    }
    match t.get("language") {
        None => errors.add("template.language", "is required (a code such as en_US)"),
        Some(Value::String(code)) => check_language_code(code, "template.language", errors),
        Some(v @ Value::Object(_)) => {
            if let Some(l) = Obj::at(v, "template.language".into(), errors) {
                l.deny_unknown(&["code", "policy"], errors);
                if let Some(code) = l.required_str("code", Len::upto(16), errors) {
                    check_language_code(code, "template.language.code", errors);
                }
                if let Some(p) = l.optional_str("policy", Len::upto(32), errors)
                    && p != "deterministic"
                {
                    errors.add("template.language.policy", "must be \"deterministic\"");
                }
            }
        }
        Some(other) => errors.add(
            "template.language",
            format!("must be a string such as en_US, found {}", type_name(other)),
        ),
    }
    let Some(components) = t.optional_array("components", 0, 20, errors) else {
        return;
    };
    for (i, c) in components.iter().enumerate() {
        let path = index("template.components", i);
        let Some(c) = Obj::at(c, path.clone(), errors) else {
            continue;
        };
        let Some(kind) = c.required_str("type", Len::upto(32), errors) else {
            continue;
        };
        if !TEMPLATE_COMPONENTS.contains(&kind) {
            errors.add(
                c.field_path("type"),
                format!("must be one of: {}", TEMPLATE_COMPONENTS.join(", ")),
            );
            continue;
        }
        if kind == "button" {
            if let Some(sub) = c.required_str("sub_type", Len::upto(32), errors)
                && !BUTTON_SUB_TYPES.contains(&sub)
            {
                errors.add(
                    c.field_path("sub_type"),
                    format!("must be one of: {}", BUTTON_SUB_TYPES.join(", ")),
                );
            }
            match c.get("index") {
                None => errors.add(
                    c.field_path("index"),
                    "is required for button components (0-9)",
                ),
                Some(Value::String(s)) if s.len() == 1 && s.as_bytes()[0].is_ascii_digit() => {}
                Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 9) => {}
                Some(_) => errors.add(
                    c.field_path("index"),
                    "must be the button's position, \"0\" to \"9\"",
                ),
            }
        }
        if kind == "carousel" {
            c.required_array("cards", 1, 10, errors);
            continue;
        }
        let Some(params) = c.optional_array("parameters", 0, 100, errors) else {
            continue;
        };
        for (j, p) in params.iter().enumerate() {
            validate_template_parameter(p, &index(&c.field_path("parameters"), j), kind, errors);
        }
    }
}

fn check_language_code(code: &str, path: &str, errors: &mut Errors) {
    // WhatsApp's codes: a 2-3 letter language, optionally `_` and a region or script
    // (en, en_US, fil, zh_HK, pt_BR).
    let (lang, region) = code
        .split_once('_')
        .map_or((code, None), |(l, r)| (l, Some(r)));
    let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok = region
        .is_none_or(|r| (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !(lang_ok && region_ok) {
        errors.add(path, "must be a WhatsApp language code such as en or en_US");
    }
}

fn validate_template_parameter(value: &Value, path: &str, component: &str, errors: &mut Errors) {
    let Some(p) = Obj::at(value, path.to_owned(), errors) else {
        return;
    };
    let Some(kind) = p.required_str("type", Len::upto(32), errors) else {
        return;
    };
    if !PARAMETER_TYPES.contains(&kind) {
        errors.add(
            p.field_path("type"),
            format!("must be one of: {}", PARAMETER_TYPES.join(", ")),
        );
        return;
    }
    p.optional_str("parameter_name", Len::upto(512), errors);
    match kind {
        // Header text parameters are capped by the 60-character header.
        "text" => {
            let max = if component == "header" { 60 } else { 32_768 };
            p.required_str("text", Len::upto(max), errors);
        }
        "payload" => {
            p.required_str("payload", Len::upto(1000), errors);
        }
        "coupon_code" => {
            p.required_str("coupon_code", Len::upto(15), errors);
        }
        "currency" => {
            if let Some(c) = p.required_obj("currency", errors) {
                c.required_str("fallback_value", Len::upto(1024), errors);
                if let Some(code) = c.required_str("code", Len::upto(3), errors)
                    && !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
                {
                    errors.add(c.field_path("code"), "must be an ISO 4217 code such as USD");
                }
                match c.get("amount_1000") {
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
                    Some(_) => errors.add(
                        c.field_path("amount_1000"),
                        "must be an integer (the amount times 1000)",
                    ),
                    None => errors.add(c.field_path("amount_1000"), "is required"),
                }
            }
        }
        "date_time" => {
            if let Some(d) = p.required_obj("date_time", errors) {
                d.required_str("fallback_value", Len::upto(1024), errors);
            }
        }
        "image" | "video" | "document" => {
            if let Some(m) = p.required_obj(kind, errors) {
                validate_media_source(&m, false, errors);
            }
        }
        "location" => {
            if let Some(l) = p.required_obj("location", errors) {
                l.required_number("latitude", -90.0, 90.0, errors);
                l.required_number("longitude", -180.0, 180.0, errors);
            }
        }
        _ => {
            p.required_obj(kind, errors);
        }
    }
}

const INTERACTIVE_TYPES: [&str; 3] = ["button", "list", "cta_url"];

/// Interactive messages: reply buttons, lists and call-to-action URL buttons,
/// in WhatsApp's own shape, with the limits from Meta's schema.
fn validate_interactive(value: &Value, errors: &mut Errors) {
    let Some(i) = Obj::at(value, "interactive".into(), errors) else {
        return;
    };
    i.deny_unknown(&["type", "header", "body", "footer", "action"], errors);
    let kind = i.required_str("type", Len::upto(32), errors);
    if let Some(k) = kind
        && !INTERACTIVE_TYPES.contains(&k)
    {
        errors.add(
            "interactive.type",
            format!("must be one of: {}", INTERACTIVE_TYPES.join(", ")),
        );
        return;
    }
    if let Some(h) = i.optional_obj("header", errors) {
        validate_interactive_header(&h, kind == Some("list"), errors);
    }
    if let Some(b) = i.required_obj("body", errors) {
        b.deny_unknown(&["text"], errors);
        b.required_str("text", Len::upto(1024), errors);
    }
    if let Some(f) = i.optional_obj("footer", errors) {
        f.deny_unknown(&["text"], errors);
        f.required_str("text", Len::upto(60), errors);
    }
    let Some(action) = i.required_obj("action", errors) else {
        return;
    };
    match kind {
        Some("button") => validate_reply_buttons(&action, errors),
        Some("list") => validate_list(&action, errors),
        Some("cta_url") => {
            action.deny_unknown(&["name", "parameters"], errors);
            if let Some(name) = action.required_str("name", Len::upto(16), errors)
                && name != "cta_url"
            {
                errors.add(action.field_path("name"), "must be \"cta_url\"");
            }
            if let Some(p) = action.required_obj("parameters", errors) {
                p.deny_unknown(&["display_text", "url"], errors);
                p.required_str("display_text", Len::upto(20), errors);
                if let Some(url) = p.required_str("url", Len::upto(2048), errors)
                    && !is_http_url(url)
                {
                    errors.add(
                        p.field_path("url"),
                        "must be an absolute http:// or https:// URL",
                    );
                }
            }
        }
        _ => {}
    }
}

fn validate_interactive_header(h: &Obj<'_>, text_only: bool, errors: &mut Errors) {
    let Some(kind) = h.required_str("type", Len::upto(16), errors) else {
        return;
    };
    match kind {
        "text" => {
            h.deny_unknown(&["type", "text"], errors);
            h.required_str("text", Len::upto(60), errors);
        }
        "image" | "video" | "document" if !text_only => {
            h.deny_unknown(&["type", kind], errors);
            if let Some(m) = h.required_obj(kind, errors) {
                validate_media_source(&m, true, errors);
            }
        }
        _ if text_only => errors.add(h.field_path("type"), "must be \"text\" for list messages"),
        _ => errors.add(
            h.field_path("type"),
            "must be one of: text, image, video, document",
        ),
    }
}

fn validate_reply_buttons(action: &Obj<'_>, errors: &mut Errors) {
    action.deny_unknown(&["buttons"], errors);
    let Some(buttons) = action.required_array("buttons", 1, 3, errors) else {
        return;
    };
    let mut ids = Vec::with_capacity(buttons.len());
    let mut titles = Vec::with_capacity(buttons.len());
    for (n, b) in buttons.iter().enumerate() {
        let Some(b) = Obj::at(b, index(&action.field_path("buttons"), n), errors) else {
            continue;
        };
        b.deny_unknown(&["type", "reply"], errors);
        if let Some(t) = b.required_str("type", Len::upto(16), errors)
            && t != "reply"
        {
            errors.add(b.field_path("type"), "must be \"reply\"");
        }
        let Some(reply) = b.required_obj("reply", errors) else {
            continue;
        };
        reply.deny_unknown(&["id", "title"], errors);
        if let Some(id) = reply.required_str("id", Len::upto(256), errors) {
            if ids.contains(&id) {
                errors.add(reply.field_path("id"), "must be unique among the buttons");
            }
            ids.push(id);
        }
        if let Some(title) = reply.required_str("title", Len::upto(20), errors) {
            if titles.contains(&title) {
                errors.add(
                    reply.field_path("title"),
                    "must be unique among the buttons",
                );
            }
            titles.push(title);
        }
    }
}

/// Most rows a list message may hold, across all its sections.
const MAX_LIST_ROWS: usize = 10;

fn validate_list(action: &Obj<'_>, errors: &mut Errors) {
    action.deny_unknown(&["button", "sections"], errors);
    action.required_str("button", Len::upto(20), errors);
    let Some(sections) = action.required_array("sections", 1, 10, errors) else {
        return;
    };
    let mut row_ids = Vec::new();
    let mut total_rows = 0;
    for (s, section) in sections.iter().enumerate() {
        let Some(section) = Obj::at(section, index(&action.field_path("sections"), s), errors)
        else {
            continue;
        };
        section.deny_unknown(&["title", "rows"], errors);
        if sections.len() > 1 {
            section.required_str("title", Len::upto(24), errors);
        } else {
            section.optional_str("title", Len::upto(24), errors);
        }
        let Some(rows) = section.required_array("rows", 1, MAX_LIST_ROWS, errors) else {
            continue;
        };
        total_rows += rows.len();
        for (r, row) in rows.iter().enumerate() {
            let Some(row) = Obj::at(row, index(&section.field_path("rows"), r), errors) else {
                continue;
            };
            row.deny_unknown(&["id", "title", "description"], errors);
            if let Some(id) = row.required_str("id", Len::upto(200), errors) {
                if row_ids.contains(&id) {
                    errors.add(row.field_path("id"), "must be unique across the list");
                }
                row_ids.push(id);
            }
            row.required_str("title", Len::upto(24), errors);
            row.optional_str("description", Len::upto(72), errors);
        }
    }
    if total_rows > MAX_LIST_ROWS {
        errors.add(
            action.field_path("sections"),
            format!("may hold at most {MAX_LIST_ROWS} rows in all, found {total_rows}"),
        );
    }
}

/// Contact cards in WhatsApp's shape: 1–5 contacts, each with `name.formatted_name`.
fn validate_contacts(value: &Value, errors: &mut Errors) {
    let Value::Array(contacts) = value else {
        errors.add(
            "contacts",
            format!("must be an array, found {}", type_name(value)),
        );
        return;
    };
    if contacts.is_empty() || contacts.len() > 5 {
        errors.add(
            "contacts",
            format!("must have 1-5 items, found {}", contacts.len()),
        );
        return;
    }
    const ALLOWED: [&str; 7] = [
        "addresses",
        "birthday",
        "emails",
        "name",
        "org",
        "phones",
        "urls",
    ];
    for (n, c) in contacts.iter().enumerate() {
        let Some(c) = Obj::at(c, index("contacts", n), errors) else {
            continue;
        };
        c.deny_unknown(&ALLOWED, errors);
        if let Some(name) = c.required_obj("name", errors) {
            name.deny_unknown(
                &[
                    "formatted_name",
                    "first_name",
                    "last_name",
                    "middle_name",
                    "suffix",
                    "prefix",
                ],
                errors,
            );
            name.required_str("formatted_name", Len::upto(512), errors);
            for part in ["first_name", "last_name", "middle_name", "suffix", "prefix"] {
                name.optional_str(part, Len::upto(512), errors);
            }
        }
        if let Some(b) = c.optional_str("birthday", Len::upto(10), errors)
            && !is_iso_date(b)
        {
            errors.add(
                c.field_path("birthday"),
                "must be a date in YYYY-MM-DD form",
            );
        }
        for (list, fields) in CONTACT_LISTS {
            let Some(items) = c.optional_array(list, 0, 20, errors) else {
                continue;
            };
            for (k, item) in items.iter().enumerate() {
                let Some(item) = Obj::at(item, index(&c.field_path(list), k), errors) else {
                    continue;
                };
                item.deny_unknown(fields, errors);
                for field in fields.iter().filter(|f| **f != "type") {
                    item.optional_str(field, Len::upto(512), errors);
                }
                // Meta's schema allows only these two types for phones, emails, urls and addresses.
                if let Some(kind) = item.optional_str("type", Len::upto(16), errors)
                    && kind != "HOME"
                    && kind != "WORK"
                {
                    errors.add(item.field_path("type"), "must be HOME or WORK");
                }
            }
        }
        if let Some(org) = c.optional_obj("org", errors) {
            org.deny_unknown(&["company", "department", "title"], errors);
            for field in ["company", "department", "title"] {
                org.optional_str(field, Len::upto(512), errors);
            }
        }
    }
}

/// The list fields of a contact card and the keys each item may have.
const CONTACT_LISTS: [(&str, &[&str]); 4] = [
    ("phones", &["phone", "type", "wa_id"]),
    ("emails", &["email", "type"]),
    ("urls", &["url", "type"]),
    (
        "addresses",
        &[
            "street",
            "city",
            "state",
            "zip",
            "country",
            "country_code",
            "type",
        ],
    ),
];

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && matches!(s[5..7].parse::<u8>(), Ok(1..=12))
        && matches!(s[8..10].parse::<u8>(), Ok(1..=31))
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
