//! WhatsApp content: the content fields of a send request checked against the
//! limits the WhatsApp Cloud API enforces, and moved into WhatsApp's own
//! message object. The request-level rules (recipient, channel, one content
//! field, the envelope fields) are in `message.rs`.

use serde_json::{Map, Value, json};

use super::kind::{MAX_CAPTION_CHARS, MAX_TEXT_CHARS, MessageKind};
use super::validation::{Errors, Len, Obj, check_str, index, is_http_url, is_https_url, type_name};

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
