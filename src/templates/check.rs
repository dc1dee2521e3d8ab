//! A template send's `components` against what the template takes: one
//! parameter per positional placeholder, the names of a NAMED template, the
//! header's one parameter of its type, a parameter for each dynamic URL,
//! copy-code or one-time-password button and none for a static one. Each
//! mismatch names `template.components[i].parameters` (or
//! `template.components` for a component that is missing).

use serde_json::Value;

use super::{ButtonTakes, HeaderParameter, ParameterFormat, Parameters};
use crate::domain::validation::FieldError;

/// The errors of a send whose `template` object is `sent`; empty when it fits.
pub fn parameters(takes: &Parameters, sent: &Value) -> Vec<FieldError> {
    let components = sent
        .get("components")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut errors = Vec::new();
    // The buttons given, as a bit per index (0–9).
    let (mut header, mut body, mut buttons) = (false, false, 0u16);
    for (i, c) in components.iter().enumerate() {
        let given = c
            .get("parameters")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let problem = match c.get("type").and_then(Value::as_str).unwrap_or_default() {
            "header" => {
                header = true;
                header_problem(takes.header.as_ref(), takes.format, given)
            }
            "body" => {
                body = true;
                body_problem(&takes.body, takes.format, given)
            }
            "button" => {
                let index = button_index(c);
                if let Some(i) = index.filter(|i| *i < 16) {
                    buttons |= 1 << i;
                }
                button_problem(takes, index, given)
            }
            // Carousels and offers are not checked here.
            _ => None,
        };
        if let Some(message) = problem {
            errors.push(FieldError {
                field: format!("template.components[{i}].parameters"),
                message,
            });
        }
    }
    missing(takes, (header, body, buttons), &mut errors);
    errors
}

/// The components a send must have and does not.
fn missing(
    takes: &Parameters,
    (header, body, buttons): (bool, bool, u16),
    errors: &mut Vec<FieldError>,
) {
    let mut add = |message: String| {
        errors.push(FieldError {
            field: "template.components".into(),
            message,
        });
    };
    if !header && let Some(h) = &takes.header {
        add(format!(
            "the template's header takes {}: add a header component",
            describe_header(h)
        ));
    }
    if !body && !takes.body.is_empty() {
        add(format!(
            "the template's body takes {}: add a body component",
            describe_body(&takes.body, takes.format)
        ));
    }
    for (index, b) in takes.buttons.iter().enumerate() {
        if b.takes == ButtonTakes::Required && buttons & (1 << index.min(15)) == 0 {
            add(format!(
                "the template's button {index} ({}) takes a parameter: add a button component with index {index}",
                b.kind
            ));
        }
    }
}

fn header_problem(
    takes: Option<&HeaderParameter>,
    format: ParameterFormat,
    given: &[Value],
) -> Option<String> {
    let Some(h) = takes else {
        return (!given.is_empty()).then(|| "the template's header takes no parameter".to_owned());
    };
    if given.len() != 1 {
        return Some(format!(
            "the template's header takes {}; {} given",
            describe_header(h),
            given.len()
        ));
    }
    let kind = given[0]
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match h {
        HeaderParameter::Text { placeholder } => {
            if kind != "text" {
                return Some(format!(
                    "the template's header takes a text parameter, not {kind}"
                ));
            }
            named_problem(&given[..1], std::slice::from_ref(placeholder), format)
        }
        HeaderParameter::Media { kind: wanted } => (kind != wanted)
            .then(|| format!("the template's header takes an {wanted} parameter, not {kind}")),
        HeaderParameter::Location => (kind != "location")
            .then(|| format!("the template's header takes a location parameter, not {kind}")),
    }
}

fn body_problem(takes: &[String], format: ParameterFormat, given: &[Value]) -> Option<String> {
    if given.len() != takes.len() {
        return Some(format!(
            "the template's body takes {}; {} given",
            describe_body(takes, format),
            given.len()
        ));
    }
    named_problem(given, takes, format)
}

/// For a NAMED template: every parameter names one of `takes`, each once.
fn named_problem(given: &[Value], takes: &[String], format: ParameterFormat) -> Option<String> {
    if format != ParameterFormat::Named {
        return None;
    }
    let names: Vec<&str> = given
        .iter()
        .map(|p| {
            p.get("parameter_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        })
        .collect();
    if names.iter().any(|n| n.is_empty()) {
        return Some(format!(
            "the template's parameters are named ({}): each needs parameter_name",
            takes.join(", ")
        ));
    }
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !takes.iter().any(|t| t == n))
        .collect();
    let absent: Vec<&str> = takes
        .iter()
        .map(String::as_str)
        .filter(|t| !names.contains(t))
        .collect();
    (!unknown.is_empty() || !absent.is_empty()).then(|| {
        format!(
            "the template's parameters are named {}; missing: {}; unknown: {}",
            takes.join(", "),
            or_none(&absent),
            or_none(&unknown)
        )
    })
}

fn button_problem(takes: &Parameters, index: Option<usize>, given: &[Value]) -> Option<String> {
    let Some(index) = index else {
        return None; // The shape check names a bad index.
    };
    let Some(button) = takes.buttons.get(index) else {
        return Some(format!(
            "the template has {} button(s): there is no button {index}",
            takes.buttons.len()
        ));
    };
    match (button.takes, given.len()) {
        (ButtonTakes::Nothing, 0) | (ButtonTakes::Required | ButtonTakes::Optional, 1) => None,
        (ButtonTakes::Nothing, n) => Some(format!(
            "the template's button {index} ({}) takes no parameter; {n} given",
            button.kind
        )),
        (_, n) => Some(format!(
            "the template's button {index} ({}) takes one parameter; {n} given",
            button.kind
        )),
    }
}

/// A button component's `index` ("0"–"9" or a number).
fn button_index(component: &Value) -> Option<usize> {
    match component.get("index")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        _ => None,
    }
}

fn describe_header(h: &HeaderParameter) -> String {
    match h {
        HeaderParameter::Text { placeholder } => {
            format!("one text parameter ({{{{{placeholder}}}}})")
        }
        HeaderParameter::Media { kind } => format!("one {kind} parameter"),
        HeaderParameter::Location => "one location parameter".to_owned(),
    }
}

fn describe_body(takes: &[String], format: ParameterFormat) -> String {
    match (takes.len(), format) {
        (0, _) => "no parameter".to_owned(),
        (n, ParameterFormat::Positional) => format!("{n} parameter(s)"),
        (n, ParameterFormat::Named) => format!("{n} named parameter(s) ({})", takes.join(", ")),
    }
}

fn or_none(list: &[&str]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}
