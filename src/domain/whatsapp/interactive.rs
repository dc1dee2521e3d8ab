//! WhatsApp interactive messages: reply buttons, lists and call-to-action
//! URL buttons, with their header, body, footer and action checked against
//! the limits in Meta's schema.

use serde_json::Value;

use super::media::validate_media_source;
use crate::domain::validation::{Errors, Len, Obj, index, is_http_url};

const INTERACTIVE_TYPES: [&str; 3] = ["button", "list", "cta_url"];

/// Interactive messages: reply buttons, lists and call-to-action URL buttons,
/// in WhatsApp's own shape, with the limits from Meta's schema.
pub(super) fn validate_interactive(value: &Value, errors: &mut Errors) {
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
        Some("cta_url") => validate_cta_url(&action, errors),
        _ => {}
    }
}

/// A call-to-action URL button: `name` "cta_url" and its `display_text` and `url`.
fn validate_cta_url(action: &Obj<'_>, errors: &mut Errors) {
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
    let Some(buttons) = action.required_array("buttons", Len::upto(3), errors) else {
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
    let Some(sections) = action.required_array("sections", Len::upto(10), errors) else {
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
        let Some(rows) = section.required_array("rows", Len::upto(MAX_LIST_ROWS), errors) else {
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
