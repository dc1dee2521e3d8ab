//! Field-level validation of untrusted JSON: every problem is collected with the
//! path of the field it concerns, so a client sees all of them in one response.

use serde::Serialize;
use serde_json::{Map, Value};

/// One invalid field: its path (`interactive.action.buttons[3].reply.title`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path from the request body's root, with `[i]` for array positions.
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

/// Most field errors listed for one message: a body with thousands of unknown
/// keys gets a short answer, not one error per key.
pub const MAX_FIELD_ERRORS: usize = 20;

/// Collects [`FieldError`]s while a request is walked: the first
/// [`MAX_FIELD_ERRORS`], then only a count.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    listed: Vec<FieldError>,
    unlisted: usize,
}

impl Errors {
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.listed.len() < MAX_FIELD_ERRORS {
            self.listed.push(FieldError {
                field: field.into(),
                message: message.into(),
            });
        } else {
            self.unlisted += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// The errors listed, and one more saying how many were left out.
    pub(crate) fn into_vec(mut self) -> Vec<FieldError> {
        if self.unlisted > 0 {
            self.listed.push(unlisted(self.unlisted, MAX_FIELD_ERRORS));
        }
        self.listed
    }
}

/// The error that closes a capped list: `count` more were found, not listed.
pub fn unlisted(count: usize, cap: usize) -> FieldError {
    FieldError {
        field: String::new(),
        message: format!("{count} more errors not listed (at most {cap} are)"),
    }
}

/// Keeps the first `cap` of `errors` and replaces the rest by one error that
/// counts them.
pub fn cap_errors(mut errors: Vec<FieldError>, cap: usize) -> Vec<FieldError> {
    if errors.len() > cap {
        let more = errors.len() - cap;
        errors.truncate(cap);
        errors.push(unlisted(more, cap));
    }
    errors
}

/// Joins a parent path and a key: `join("text", "body")` is `text.body`.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of an array element: `index("rows", 2)` is `rows[2]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// The JSON type name of a value, for "expected a string, found a number" messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Length bounds for a string, counted in Unicode scalar values (what WhatsApp counts).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Len {
    pub min: usize,
    pub max: usize,
}

impl Len {
    pub(crate) const fn upto(max: usize) -> Self {
        Self { min: 1, max }
    }
    pub(crate) const fn optional_upto(max: usize) -> Self {
        Self { min: 0, max }
    }
}

/// Read-only helpers over one JSON object at a known path.
pub(crate) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: String,
}

impl<'a> Obj<'a> {
    /// Views `value` as an object at `path`, recording an error if it is not one.
    pub(crate) fn at(value: &'a Value, path: String, errors: &mut Errors) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self { map, path }),
            other => {
                errors.add(
                    path,
                    format!("must be an object, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(crate) fn field_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Rejects keys outside `allowed`, naming each one; typos must not pass silently.
    pub(crate) fn deny_unknown(&self, allowed: &[&str], errors: &mut Errors) {
        for key in self.map.keys() {
            if !allowed.contains(&key.as_str()) {
                errors.add(
                    self.field_path(key),
                    format!("unknown field; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }

    /// A present, non-null value.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A required string whose length is within `len`.
    pub(crate) fn required_str(&self, key: &str, len: Len, errors: &mut Errors) -> Option<&'a str> {
        match self.get(key) {
            None => {
                errors.add(self.field_path(key), "is required");
                None
            }
            Some(v) => check_str(v, &self.field_path(key), len, errors),
        }
    }

    /// An optional string; when present, its length is within `len`.
    pub(crate) fn optional_str(&self, key: &str, len: Len, errors: &mut Errors) -> Option<&'a str> {
        self.get(key)
            .and_then(|v| check_str(v, &self.field_path(key), len, errors))
    }

    /// An optional boolean.
    pub(crate) fn optional_bool(&self, key: &str, errors: &mut Errors) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                errors.add(
                    self.field_path(key),
                    format!("must be a boolean, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A required number within `[min, max]`.
    pub(crate) fn required_number(
        &self,
        key: &str,
        min: f64,
        max: f64,
        errors: &mut Errors,
    ) -> Option<f64> {
        let path = self.field_path(key);
        match self.get(key) {
            None => errors.add(path, "is required"),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if (min..=max).contains(&x) => return Some(x),
                _ => errors.add(path, format!("must be between {min} and {max}")),
            },
            Some(other) => errors.add(
                path,
                format!("must be a number, found {}", type_name(other)),
            ),
        }
        None
    }

    /// A required array whose length is within `len`.
    pub(crate) fn required_array(&self, key: &str, len: Len, errors: &mut Errors) -> Items<'a> {
        match self.get(key) {
            None => {
                errors.add(self.field_path(key), "is required");
                None
            }
            Some(v) => check_array(v, &self.field_path(key), len, errors),
        }
    }

    /// An optional array; when present, its length is within `len`.
    pub(crate) fn optional_array(&self, key: &str, len: Len, errors: &mut Errors) -> Items<'a> {
        self.get(key)
            .and_then(|v| check_array(v, &self.field_path(key), len, errors))
    }

    /// A required nested object.
    pub(crate) fn required_obj(&self, key: &str, errors: &mut Errors) -> Option<Obj<'a>> {
        match self.get(key) {
            None => {
                errors.add(self.field_path(key), "is required");
                None
            }
            Some(v) => Obj::at(v, self.field_path(key), errors),
        }
    }

    /// An optional nested object.
    pub(crate) fn optional_obj(&self, key: &str, errors: &mut Errors) -> Option<Obj<'a>> {
        self.get(key)
            .and_then(|v| Obj::at(v, self.field_path(key), errors))
    }
}

/// Checks that `value` is a string of acceptable length; blank text counts as empty
/// when the minimum is positive, because WhatsApp rejects whitespace-only bodies.
pub(crate) fn check_str<'a>(
    value: &'a Value,
    path: &str,
    len: Len,
    errors: &mut Errors,
) -> Option<&'a str> {
    let Value::String(s) = value else {
        errors.add(
            path,
            format!("must be a string, found {}", type_name(value)),
        );
        return None;
    };
    // Byte length bounds char count from above, so most strings skip the count.
    let chars = if s.len() <= len.max {
        s.chars().count()
    } else {
        s.chars().take(len.max + 1).count()
    };
    if len.min > 0 && s.trim().is_empty() {
        errors.add(path, "must not be empty");
        None
    } else if chars < len.min || chars > len.max {
        if len.min > 1 {
            errors.add(
                path,
                format!("must be {}-{} characters long", len.min, len.max),
            );
        } else {
            errors.add(path, format!("must be at most {} characters long", len.max));
        }
        None
    } else {
        Some(s)
    }
}

/// An array's items, when it is one of the right length.
pub(crate) type Items<'a> = Option<&'a Vec<Value>>;

fn check_array<'a>(value: &'a Value, path: &str, len: Len, errors: &mut Errors) -> Items<'a> {
    let Len { min, max } = len;
    let Value::Array(items) = value else {
        errors.add(
            path,
            format!("must be an array, found {}", type_name(value)),
        );
        return None;
    };
    if items.len() < min || items.len() > max {
        errors.add(
            path,
            format!("must have {min}-{max} items, found {}", items.len()),
        );
        return None;
    }
    Some(items)
}

/// True when `s` is an absolute `https://` URL with a host and no whitespace.
pub(crate) fn is_https_url(s: &str) -> bool {
    is_url_with_scheme(s, "https://")
}

/// True when `s` is an absolute `http://` or `https://` URL with a host.
pub(crate) fn is_http_url(s: &str) -> bool {
    is_url_with_scheme(s, "https://") || is_url_with_scheme(s, "http://")
}

fn is_url_with_scheme(s: &str, scheme: &str) -> bool {
    let Some(rest) = s
        .get(..scheme.len())
        .filter(|p| p.eq_ignore_ascii_case(scheme))
        .map(|_| &s[scheme.len()..])
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_counted_in_characters_not_bytes() {
        let mut errors = Errors::default();
        let emoji = Value::String("😀".repeat(20));
        assert!(check_str(&emoji, "t", Len::upto(20), &mut errors).is_some());
        assert!(errors.is_empty());
        let too_long = Value::String("é".repeat(21));
        assert!(check_str(&too_long, "t", Len::upto(20), &mut errors).is_none());
        assert_eq!(
            errors.into_vec()[0].message,
            "must be at most 20 characters long"
        );
    }

    #[test]
    fn blank_strings_are_empty() {
        let mut errors = Errors::default();
        assert!(check_str(&json!("  \n"), "t", Len::upto(5), &mut errors).is_none());
        assert_eq!(errors.into_vec()[0].message, "must not be empty");
    }

    #[test]
    fn wrong_types_are_named() {
        let mut errors = Errors::default();
        check_str(&json!(5), "t", Len::upto(5), &mut errors);
        assert_eq!(
            errors.into_vec()[0].message,
            "must be a string, found a number"
        );
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        assert!(is_https_url("https://example.com/a.jpg"));
        assert!(is_https_url("HTTPS://example.com"));
        assert!(!is_https_url("http://example.com/a.jpg"));
        assert!(!is_https_url("https://"));
        assert!(!is_https_url("https:///path"));
        assert!(!is_https_url("https://exa mple.com"));
        assert!(!is_https_url("ftp://example.com"));
        assert!(is_http_url("http://example.com"));
        assert!(!is_http_url("javascript:alert(1)"));
    }
}
