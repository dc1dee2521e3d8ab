//! The shape of a batch send (`POST /api/v1/send/batch`): `defaults` overlaid by
//! each entry. Each overlaid entry is then validated exactly like a single send
//! (`OutboundMessage::try_from`): there is one validation path.

use serde_json::{Map, Value};

use super::message::{CONTENT_FIELDS, is_send_field};
use super::validation::{Errors, FieldError};

/// Bounds on the work one batch may ask for.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// `BATCH_MAX_MESSAGES`.
    pub max_messages: usize,
    /// The largest `defaults`, serialised (a single send's body limit).
    pub max_defaults_bytes: usize,
    /// Most bytes of `defaults` copied into entries in all (size × entries):
    /// the copies are the one part of a batch's cost not paid by its sender's
    /// bytes, so they are bounded by a multiple of the body limit.
    pub max_copied_bytes: usize,
}

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
    /// `defaults` is checked once, before it is copied: only a send's fields,
    /// at most `max_defaults_bytes` serialised, and at most
    /// `max_copied_bytes` once copied into every entry.
    pub fn parse(body: Value, limits: BatchLimits) -> Result<Self, Vec<FieldError>> {
        let BatchLimits {
            max_messages,
            max_defaults_bytes,
            max_copied_bytes,
        } = limits;
        let error = |field: &str, message: String| {
            vec![FieldError {
                field: field.to_owned(),
                message,
            }]
        };
        let Value::Object(mut body) = body else {
            return Err(error("", "the request body must be a JSON object".into()));
        };
        let mut unknown = Errors::default();
        for k in body
            .keys()
            .filter(|k| !matches!(k.as_str(), "defaults" | "messages"))
        {
            unknown.add(
                k.clone(),
                "unknown field (a batch has defaults and messages)",
            );
        }
        if !unknown.is_empty() {
            return Err(unknown.into_vec());
        }
        let defaults = match body.remove("defaults") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(d)) => d,
            Some(_) => return Err(error("defaults", "must be an object".into())),
        };
        let mut unknown = Errors::default();
        for k in defaults.keys().filter(|k| !is_send_field(k)) {
            unknown.add(format!("defaults.{k}"), "unknown field");
        }
        if !unknown.is_empty() {
            return Err(unknown.into_vec());
        }
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
        if defaults_bytes.saturating_mul(messages.len()) > max_copied_bytes {
            return Err(error(
                "defaults",
                format!(
                    "is {defaults_bytes} bytes, copied into {} entries; at most {max_copied_bytes} bytes may be copied in all: send smaller defaults or fewer entries per batch",
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

/// The two ways to give a message's expiry.
const EXPIRY_FIELDS: [&str; 2] = ["expiresAt", "validitySeconds"];

fn overlay(defaults: &Map<String, Value>, entry: Value) -> Value {
    let Value::Object(entry) = entry else {
        return entry;
    };
    let own_content = entry.keys().any(|k| CONTENT_FIELDS.contains(&k.as_str()));
    // An entry's own expiry replaces the defaults' whichever form each has.
    let own_expiry = entry.keys().any(|k| EXPIRY_FIELDS.contains(&k.as_str()));
    let mut merged: Map<String, Value> = defaults
        .iter()
        .filter(|(k, _)| !(own_content && CONTENT_FIELDS.contains(&k.as_str())))
        .filter(|(k, _)| !(own_expiry && EXPIRY_FIELDS.contains(&k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    merged.extend(entry);
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(max_messages: usize, max_defaults_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_messages,
            max_defaults_bytes,
            max_copied_bytes: 1 << 20,
        }
    }

    #[test]
    fn entries_overlay_the_defaults() {
        let batch = BatchRequest::parse(
            json!({"defaults": {"message": "Sale", "callbackData": "c1"},
                   "messages": [{"to": "+1"}, {"to": "+2", "message": "Hi Ana"},
                                {"to": "+3", "template": {"name": "t"}}, 7]}),
            limits(10, 65_536),
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
    fn an_entrys_expiry_replaces_the_defaults_in_either_form() {
        let batch = BatchRequest::parse(
            json!({"defaults": {"message": "Sale", "validitySeconds": 60},
                   "messages": [{"to": "+1"}, {"to": "+2", "expiresAt": "2030-01-01T00:00:00Z"}]}),
            limits(10, 65_536),
        )
        .unwrap();
        assert_eq!(batch.entries[0]["validitySeconds"], 60);
        assert_eq!(
            batch.entries[1],
            json!({"to": "+2", "message": "Sale", "expiresAt": "2030-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn the_batch_shape_is_checked() {
        let fields = |body: Value| -> Vec<String> {
            BatchRequest::parse(body, limits(2, 64))
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
        assert_eq!(
            fields(json!({"defaults": {"mesage": "x"}, "messages": [{}]})),
            ["defaults.mesage"]
        );
    }

    /// `defaults` with thousands of unknown keys is refused once, with a
    /// short list, before anything is copied into the entries.
    #[test]
    fn unknown_defaults_are_reported_once_and_capped() {
        let defaults: Map<String, Value> = (0..6000).map(|i| (format!("k{i}"), json!(1))).collect();
        let messages: Vec<Value> = (0..1000).map(|_| json!({})).collect();
        let errors = BatchRequest::parse(
            json!({"defaults": defaults, "messages": messages}),
            limits(1000, 1 << 20),
        )
        .unwrap_err();
        assert_eq!(
            errors.len(),
            crate::domain::validation::MAX_FIELD_ERRORS + 1
        );
        assert_eq!(errors[0].field, "defaults.k0");
        assert!(errors.last().unwrap().message.contains("5980 more"));
    }

    #[test]
    fn defaults_copied_past_the_budget_are_refused() {
        let body = |n: usize| {
            let messages: Vec<Value> = (0..n).map(|_| json!({})).collect();
            json!({"defaults": {"message": "x".repeat(1000)}, "messages": messages})
        };
        let limits = BatchLimits {
            max_messages: 1000,
            max_defaults_bytes: 2000,
            max_copied_bytes: 100_000,
        };
        assert!(BatchRequest::parse(body(90), limits).is_ok());
        let errors = BatchRequest::parse(body(200), limits).unwrap_err();
        assert_eq!(errors[0].field, "defaults");
    }
}
