//! The shape of a batch send (`POST /api/v1/send/batch`): `defaults` overlaid by
//! each entry. Each overlaid entry is then validated exactly like a single send
//! (`OutboundMessage::try_from`): there is one validation path.

use serde_json::{Map, Value};

use super::message::CONTENT_FIELDS;
use super::validation::FieldError;

/// A batch body read into its parts, before any entry is validated.
#[derive(Debug)]
pub struct BatchRequest {
    /// Each entry with the defaults overlaid, in input order.
    pub entries: Vec<Value>,
}

impl BatchRequest {
    /// Reads `{"defaults"?: {...}, "messages": [{...}, ...]}`. Each entry is the
    /// defaults overlaid by the entry's own top-level fields (the entry wins; an
    /// entry with a content field of its own takes none of the defaults'
    /// content fields, since a message has exactly one). An entry that is not
    /// an object is kept as it is, and validation names it.
    /// `defaults` may be at most `max_defaults_bytes` serialised (the size of
    /// a single send): it is copied into every entry.
    pub fn parse(
        body: Value,
        max_messages: usize,
        max_defaults_bytes: usize,
    ) -> Result<Self, Vec<FieldError>> {
        let error = |field: &str, message: String| {
            vec![FieldError {
                field: field.to_owned(),
                message,
            }]
        };
        let Value::Object(mut body) = body else {
            return Err(error("", "the request body must be a JSON object".into()));
        };
        let unknown: Vec<FieldError> = body
            .keys()
            .filter(|k| !matches!(k.as_str(), "defaults" | "messages"))
            .map(|k| FieldError {
                field: k.clone(),
                message: "unknown field (a batch has defaults and messages)".into(),
            })
            .collect();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let defaults = match body.remove("defaults") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(d)) => d,
            Some(_) => return Err(error("defaults", "must be an object".into())),
        };
        let defaults_bytes = serde_json::to_vec(&defaults).map_or(usize::MAX, |v| v.len());
        if defaults_bytes > max_defaults_bytes {
            return Err(error(
                "defaults",
                format!(
                    "is {defaults_bytes} bytes; it is copied into every entry, so it may be at most {max_defaults_bytes} (a single send's limit)"
                ),
            ));
        }
        let messages = match body.remove("messages") {
            Some(Value::Array(m)) => m,
            Some(_) => return Err(error("messages", "must be an array of messages".into())),
            None => return Err(error("messages", "is required".into())),
        };
        if messages.is_empty() || messages.len() > max_messages {
            return Err(error(
                "messages",
                format!(
                    "must hold 1 to {max_messages} messages, found {}",
                    messages.len()
                ),
            ));
        }
        let entries = messages
            .into_iter()
            .map(|entry| overlay(&defaults, entry))
            .collect();
        Ok(Self { entries })
    }
}

fn overlay(defaults: &Map<String, Value>, entry: Value) -> Value {
    let Value::Object(entry) = entry else {
        return entry;
    };
    let own_content = entry.keys().any(|k| CONTENT_FIELDS.contains(&k.as_str()));
    let mut merged: Map<String, Value> = defaults
        .iter()
        .filter(|(k, _)| !(own_content && CONTENT_FIELDS.contains(&k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    merged.extend(entry);
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_overlay_the_defaults() {
        let batch = BatchRequest::parse(
            json!({"defaults": {"message": "Sale", "callbackData": "c1"},
                   "messages": [{"to": "+1"}, {"to": "+2", "message": "Hi Ana"},
                                {"to": "+3", "template": {"name": "t"}}, 7]}),
            10,
            65_536,
        )
        .unwrap();
        assert_eq!(
            batch.entries[0],
            json!({"to": "+1", "message": "Sale", "callbackData": "c1"})
        );
        assert_eq!(batch.entries[1]["message"], "Hi Ana");
        assert_eq!(
            batch.entries[2],
            json!({"to": "+3", "template": {"name": "t"}, "callbackData": "c1"}),
            "an entry's own content replaces the default content"
        );
        assert_eq!(batch.entries[3], json!(7));
    }

    #[test]
    fn the_batch_shape_is_checked() {
        let fields = |body: Value| -> Vec<String> {
            BatchRequest::parse(body, 2, 64)
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(json!([])), [""]);
        assert_eq!(fields(json!({"messages": []})), ["messages"]);
        assert_eq!(fields(json!({"messages": [{}, {}, {}]})), ["messages"]);
        assert_eq!(fields(json!({"messages": {}})), ["messages"]);
        assert_eq!(
            fields(json!({"defaults": 1, "messages": [{}]})),
            ["defaults"]
        );
        assert_eq!(fields(json!({"mesages": [{}]})), ["mesages"]);
        assert_eq!(
            fields(json!({"defaults": {"message": "x".repeat(100)}, "messages": [{}]})),
            ["defaults"]
        );
    }
}
