//! WhatsApp contact cards: the `contacts` content field, each card's name,
//! birthday, organisation and its lists of phones, emails, URLs and addresses.

use serde_json::Value;

use crate::domain::validation::{Errors, Len, Obj, index, type_name};

/// The fields a contact card may have.
const CONTACT_FIELDS: [&str; 7] = [
    "addresses",
    "birthday",
    "emails",
    "name",
    "org",
    "phones",
    "urls",
];

/// The optional parts of a contact's `name`, besides `formatted_name`.
const NAME_PARTS: [&str; 5] = ["first_name", "last_name", "middle_name", "suffix", "prefix"];

/// The fields of a contact's `org`.
const ORG_FIELDS: [&str; 3] = ["company", "department", "title"];

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

/// Contact cards in WhatsApp's shape: 1–5 contacts, each with `name.formatted_name`.
pub(super) fn validate_contacts(value: &Value, errors: &mut Errors) {
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
    for (n, c) in contacts.iter().enumerate() {
        validate_contact(c, index("contacts", n), errors);
    }
}

/// One contact card at `path`.
fn validate_contact(value: &Value, path: String, errors: &mut Errors) {
    let Some(c) = Obj::at(value, path, errors) else {
        return;
    };
    c.deny_unknown(&CONTACT_FIELDS, errors);
    if let Some(name) = c.required_obj("name", errors) {
        validate_contact_name(&name, errors);
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
        validate_contact_list(&c, list, fields, errors);
    }
    if let Some(org) = c.optional_obj("org", errors) {
        org.deny_unknown(&ORG_FIELDS, errors);
        for field in ORG_FIELDS {
            org.optional_str(field, Len::upto(512), errors);
        }
    }
}

/// A contact's `name`: a required `formatted_name` and optional parts.
fn validate_contact_name(name: &Obj<'_>, errors: &mut Errors) {
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
    for part in NAME_PARTS {
        name.optional_str(part, Len::upto(512), errors);
    }
}

/// The optional array `list` of contact card `c`, each item holding only `fields`.
fn validate_contact_list(c: &Obj<'_>, list: &str, fields: &[&str], errors: &mut Errors) {
    let Some(items) = c.optional_array(list, Len::optional_upto(20), errors) else {
        return;
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
