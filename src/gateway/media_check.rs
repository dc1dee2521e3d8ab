//! The edge's check of a send that refers to kept media by `mediaId`: each
//! must be the tenant's (`400` naming the field otherwise, as for any bad
//! field), and of the kind its field sends (`{"image": {"mediaId": <a
//! PDF>}}` is refused). The consumer gives each its provider id before the
//! call (`delivery/media.rs`).

use serde_json::Value;

use crate::domain::{FieldError, OutboundMessage};
use crate::gateway::AppState;
use crate::gateway::error::ApiError;

/// `Ok` when every `mediaId` of `message` is `tenant`'s and fits its field.
pub async fn check(
    state: &AppState,
    tenant: &str,
    message: &OutboundMessage,
) -> Result<(), ApiError> {
    let mut refs = Vec::new();
    find(&message.content, "", None, &mut refs);
    if refs.is_empty() {
        return Ok(());
    }
    let store = state.media.as_ref().ok_or(ApiError::NoMediaStore)?;
    let mut errors = Vec::new();
    for (path, kind, id) in refs {
        let info = if crate::media::is_media_id(&id) {
            store.info(&id).await.map_err(ApiError::MediaUnavailable)?
        } else {
            None
        };
        let problem = match info {
            Some(info) if info.tenant == tenant => {
                let actual = crate::media::kinds::accepted(&info.mime_type).map(|(_, a)| a.kind);
                match (kind, actual) {
                    (Some(want), Some(got)) if want != got => {
                        Some(format!("is a {got} ({}), not a {want}", info.mime_type))
                    }
                    (_, None) => Some(format!(
                        "is {}, which WhatsApp does not send",
                        info.mime_type
                    )),
                    _ => None,
                }
            }
            _ => Some(
                "is not a mediaId of this tenant: upload the file with POST /api/v1/media"
                    .to_owned(),
            ),
        };
        if let Some(message) = problem {
            errors.push(FieldError {
                field: path,
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidFields(errors))
    }
}

/// Each `mediaId` under `value`: its field's path (as the request names
/// it), the media kind its parent field sends, and the id.
fn find(
    value: &Value,
    path: &str,
    parent: Option<&str>,
    refs: &mut Vec<(String, Option<&'static str>, String)>,
) {
    match value {
        Value::Object(map) => {
            if let Some(id) = map.get("mediaId") {
                let kind = parent.and_then(|p| {
                    ["image", "video", "audio", "document", "sticker"]
                        .into_iter()
                        .find(|k| *k == p)
                });
                let id = id.as_str().unwrap_or_default().to_owned();
                refs.push((join(path, "mediaId"), kind, id));
            }
            for (key, v) in map {
                find(v, &join(path, key), Some(key), refs);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find(v, &format!("{path}[{i}]"), parent, refs);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
