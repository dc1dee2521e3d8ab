//! WhatsApp media objects: the `image`, `video`, `audio`, `document` and
//! `sticker` content fields, and the `id`-or-`link` source rule that template
//! parameters and interactive headers reuse.

use serde_json::Value;

use crate::domain::kind::MAX_CAPTION_CHARS;
use crate::domain::validation::{Errors, Len, Obj, is_http_url, is_https_url};

/// A media object: exactly one of `id`, `mediaId` (Herald's, from `POST
/// /api/v1/media`) or an `https` `link`; `caption` only where
/// WhatsApp shows one; `filename` only on documents.
pub(super) fn validate_media(value: &Value, field: &str, captioned: bool, errors: &mut Errors) {
    let Some(m) = Obj::at(value, field.into(), errors) else {
        return;
    };
    let allowed: &[&str] = match field {
        "document" => &["id", "mediaId", "link", "caption", "filename"],
        _ if captioned => &["id", "mediaId", "link", "caption"],
        _ => &["id", "mediaId", "link"],
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

/// Exactly one of `id` (a WhatsApp media id), `mediaId` (Herald's, checked
/// against the store at the edge) or `link` (an https URL).
pub(super) fn validate_media_source(m: &Obj<'_>, https_only: bool, errors: &mut Errors) {
    let given = ["id", "mediaId", "link"]
        .iter()
        .filter(|k| m.get(k).is_some())
        .count();
    if given > 1 {
        errors.add(m.path.clone(), "give one of id, mediaId or link");
        return;
    }
    match (m.get("id"), m.get("mediaId"), m.get("link")) {
        (None, None, None) => errors.add(
            m.path.clone(),
            "needs id (a WhatsApp media id), mediaId (from POST /api/v1/media) or link (an https URL)",
        ),
        (Some(_), _, _) => {
            m.required_str("id", Len::upto(256), errors);
        }
        (_, Some(_), _) => {
            m.required_str("mediaId", Len::upto(64), errors);
        }
        (None, None, Some(_)) => {
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
