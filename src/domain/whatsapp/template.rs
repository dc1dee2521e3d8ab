//! WhatsApp templates: the template's `name` and `language`, and its
//! `components` array with each component's parameters, checked against the
//! component, button and parameter types WhatsApp knows.

use serde_json::Value;

use super::media::validate_media_source;
use crate::domain::validation::{Errors, Len, Obj, index, type_name};

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
pub(super) fn validate_template(value: &Value, errors: &mut Errors) {
    let Some(t) = Obj::at(value, "template".into(), errors) else {
        return;
    };
    t.deny_unknown(&["name", "language", "components"], errors);
    check_template_name(&t, errors);
    check_template_language(t.get("language"), errors);
    let Some(components) = t.optional_array("components", Len::optional_upto(20), errors) else {
        return;
    };
    for (i, c) in components.iter().enumerate() {
        validate_component(c, index("template.components", i), errors);
    }
}

/// The template's `name`: lowercase letters, digits and underscores, as WhatsApp names them.
fn check_template_name(t: &Obj<'_>, errors: &mut Errors) {
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
}

/// The template's `language`: a code string, or a `{code, policy}` object.
fn check_template_language(language: Option<&Value>, errors: &mut Errors) {
    match language {
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
}

/// One entry of `components` at `path`: its `type`, a button's `sub_type` and
/// `index`, a carousel's `cards`, and the parameters of the others.
fn validate_component(value: &Value, path: String, errors: &mut Errors) {
    let Some(c) = Obj::at(value, path, errors) else {
        return;
    };
    let Some(kind) = c.required_str("type", Len::upto(32), errors) else {
        return;
    };
    if !TEMPLATE_COMPONENTS.contains(&kind) {
        errors.add(
            c.field_path("type"),
            format!("must be one of: {}", TEMPLATE_COMPONENTS.join(", ")),
        );
        return;
    }
    if kind == "button" {
        check_button_component(&c, errors);
    }
    if kind == "carousel" {
        c.required_array("cards", Len::upto(10), errors);
        return;
    }
    let Some(params) = c.optional_array("parameters", Len::optional_upto(100), errors) else {
        return;
    };
    for (j, p) in params.iter().enumerate() {
        validate_template_parameter(p, &index(&c.field_path("parameters"), j), kind, errors);
    }
}

/// A button component's `sub_type` and its `index`, the button's position (0-9).
fn check_button_component(c: &Obj<'_>, errors: &mut Errors) {
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
                check_currency(&c, errors);
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

/// A currency parameter's object: `fallback_value`, an ISO 4217 `code` and
/// an integer `amount_1000`.
fn check_currency(c: &Obj<'_>, errors: &mut Errors) {
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
