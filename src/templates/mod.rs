//! WhatsApp message templates as Meta approved them, kept so that a
//! template send is checked at the edge instead of failing minutes later
//! (132000, 132001, 132015, error 100 on named parameters).
//!
//! - [`Template`]: what a template takes, read from Graph's
//!   `GET /{waba-id}/message_templates` ([`Template::from_graph`]).
//! - [`check`]: a send's `template` against it.
//! - [`store`]: where templates are kept (the embedded database, DynamoDB).
//! - [`service`]: the cache every check reads and the status webhooks
//!   applied to it; `sync.rs`: its listing from Graph.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod check;
pub mod service;
pub mod store;
mod sync;

/// One template in one language of one WhatsApp Business Account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// Its WhatsApp Business Account.
    pub waba_id: String,
    /// Meta's id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its name (lowercase, digits, underscores).
    pub name: String,
    /// Its language code (`en_US`).
    pub language: String,
    /// Meta's status, upper case (`APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, …).
    pub status: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// What a send must give it, or `None` when Herald cannot tell (an
    /// authentication or carousel template, a component it does not know,
    /// or a template known only from a status webhook): then only its
    /// name, language and status are checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// When a status webhook last changed it (Unix ms): a listing begun
    /// before then does not undo the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed_ms: Option<i64>,
}

/// Statuses a template cannot be sent in (Meta's); any other (`APPROVED`,
/// `REINSTATED`, `FLAGGED`, one Herald does not know) is let through: a
/// wrong refusal costs more than a send Meta refuses.
pub const UNSENDABLE: [&str; 10] = [
    "PENDING",
    "REJECTED",
    "PAUSED",
    "DISABLED",
    "IN_APPEAL",
    "PENDING_DELETION",
    "DELETED",
    "ARCHIVED",
    "LIMIT_EXCEEDED",
    "LOCKED",
];

/// True when a template in `status` can be sent.
pub fn sendable(status: &str) -> bool {
    !UNSENDABLE.contains(&status)
}

/// What a send must give a template, per component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameters {
    /// `POSITIONAL` (`{{1}}`) or `NAMED` (`{{first_name}}`).
    pub format: ParameterFormat,
    /// The header's parameter, if it takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderParameter>,
    /// The body's placeholders, in order of first appearance (`1`, `2`, or names).
    #[serde(default)]
    pub body: Vec<String>,
    /// The buttons, by their index.
    #[serde(default)]
    pub buttons: Vec<Button>,
}

/// `parameter_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParameterFormat {
    /// `{{1}}`, `{{2}}`, …: parameters count.
    #[default]
    Positional,
    /// `{{first_name}}`: parameters carry `parameter_name`.
    Named,
}

/// The one parameter a header takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum HeaderParameter {
    /// A text header with a variable: one `text` parameter (named so when NAMED).
    Text {
        /// The placeholder.
        placeholder: String,
    },
    /// A media header: one parameter of this type (`image`, `video`, `document`).
    Media {
        /// The parameter type, lower case.
        kind: String,
    },
    /// A location header: one `location` parameter.
    Location,
}

/// A template button, and whether a send gives it a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Button {
    /// Meta's button type, upper case (`QUICK_REPLY`, `URL`, `PHONE_NUMBER`, `COPY_CODE`, …).
    pub kind: String,
    /// What a send's component for it must carry.
    pub takes: ButtonTakes,
}

/// What a button component in a send carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ButtonTakes {
    /// Exactly one parameter, and the component is required (a URL with
    /// `{{1}}`, a copy-code or one-time-password button).
    Required,
    /// One parameter if the component is sent (a quick reply's payload, a
    /// flow's action): Meta sends without it.
    Optional,
    /// Nothing: a static URL, a phone number.
    Nothing,
}

/// A `message_template_status_update` webhook: a template's new status
/// (or, for `message_template_components_update`, the same status with
/// components to list again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// `entry[].id`: the account.
    pub waba_id: String,
    /// `message_template_name`.
    pub name: String,
    /// `message_template_language`.
    pub language: String,
    /// `event`: the new status, upper case; `None`: unchanged, the
    /// components were edited.
    pub status: Option<String>,
    /// When it arrived (Unix ms).
    pub at_ms: i64,
}

/// A sync's result for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The templates Graph listed.
    pub templates: Vec<Template>,
    /// When the listing began (Unix ms): status webhooks after it win.
    pub started_ms: i64,
    /// When it ended (Unix ms).
    pub synced_ms: i64,
}

impl Template {
    /// A template as Graph lists it (`name`, `language`, `status`,
    /// `category`, `components`, `parameter_format`, `id`); `None` without a
    /// name or language.
    pub fn from_graph(waba_id: &str, value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let category = text("category");
        let format = match value.get("parameter_format").and_then(Value::as_str) {
            Some(f) if f.eq_ignore_ascii_case("NAMED") => ParameterFormat::Named,
            _ => ParameterFormat::Positional,
        };
        let components = value.get("components").and_then(Value::as_array);
        let parameters = match (category.as_deref(), components) {
            (Some("AUTHENTICATION"), _) | (_, None) => None,
            (_, Some(components)) => Parameters::read(format, components),
        };
        Some(Self {
            waba_id: waba_id.to_owned(),
            id: match value.get("id") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
            name: text("name")?,
            language: text("language")?,
            status: text("status").map_or_else(|| "UNKNOWN".into(), |s| s.to_ascii_uppercase()),
            category,
            parameters,
            status_changed_ms: None,
        })
    }

    /// A template known only from a status webhook (before a sync has
    /// listed it): its parameters are unknown.
    pub fn from_status(change: &StatusChange) -> Self {
        Self {
            waba_id: change.waba_id.clone(),
            id: None,
            name: change.name.clone(),
            language: change.language.clone(),
            status: change.status.clone().unwrap_or_else(|| "UNKNOWN".into()),
            category: None,
            parameters: None,
            status_changed_ms: Some(change.at_ms),
        }
    }
}

impl Parameters {
    /// What the components take; `None` when one is of a kind Herald does
    /// not check (carousel, limited-time offer, …).
    fn read(format: ParameterFormat, components: &[Value]) -> Option<Self> {
        let mut parameters = Self {
            format,
            ..Self::default()
        };
        for c in components {
            let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
            let text = c.get("text").and_then(Value::as_str).unwrap_or_default();
            match kind.to_ascii_uppercase().as_str() {
                "HEADER" => parameters.header = header(c, text)?,
                "BODY" => parameters.body = placeholders(text),
                "FOOTER" => {}
                "BUTTONS" => {
                    parameters.buttons = c
                        .get("buttons")
                        .and_then(Value::as_array)
                        .map_or(&[][..], Vec::as_slice)
                        .iter()
                        .map(button)
                        .collect();
                }
                _ => return None,
            }
        }
        Some(parameters)
    }
}

/// A header component's parameter: `Some(None)` when it takes none, `None`
/// when Herald does not know its format.
fn header(component: &Value, text: &str) -> Option<Option<HeaderParameter>> {
    let format = component
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("TEXT")
        .to_ascii_uppercase();
    match format.as_str() {
        "TEXT" => Some(
            placeholders(text)
                .into_iter()
                .next()
                .map(|placeholder| HeaderParameter::Text { placeholder }),
        ),
        "IMAGE" | "VIDEO" | "DOCUMENT" => Some(Some(HeaderParameter::Media {
            kind: format.to_ascii_lowercase(),
        })),
        "LOCATION" => Some(Some(HeaderParameter::Location)),
        _ => None,
    }
}

/// A button and what a send gives it.
fn button(value: &Value) -> Button {
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let url = value.get("url").and_then(Value::as_str).unwrap_or_default();
    let takes = match kind.as_str() {
        "URL" if url.contains("{{") => ButtonTakes::Required,
        "COPY_CODE" | "OTP" => ButtonTakes::Required,
        "URL" | "PHONE_NUMBER" | "VOICE_CALL" => ButtonTakes::Nothing,
        _ => ButtonTakes::Optional,
    };
    Button { kind, takes }
}

/// The `{{…}}` placeholders of `text`, each once, in order of first
/// appearance (`{{1}}` → `1`, `{{first_name}}` → `first_name`).
pub fn placeholders(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        let name = after[..end].trim();
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !found.iter().any(|f| f == name)
        {
            found.push(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    found
}

#[cfg(test)]
mod tests;
