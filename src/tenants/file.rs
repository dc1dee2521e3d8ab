//! `TENANTS_FILE`: the TOML that names the tenants, read once at start-up
//! and refused, naming the entry, when it could let one tenant act as
//! another: a literal token, a key or a number in two tenants, a key id that
//! `API_KEYS` does not have, a key that belongs to no tenant.
//!
//! ```toml
//! [[tenant]]
//! id = "acme"
//! keys = ["acme-web", "acme-batch"]
//! whatsapp = [{ phone_number_id = "1234567890", token = "env:ACME_WA_TOKEN", max_mps = 80 }]
//! sms_senders = ["ACME", "+14155550100"]
//! fair_share = 1
//! quiet_hours = { from = "21:00", to = "08:00", time_zone = "recipient" }
//! ```

use std::collections::HashMap;

use serde::Deserialize;

use super::{Number, Tenant};
use crate::secret::Secret;

/// Why the file cannot be used; the message names the entry, never a token.
#[derive(Debug, thiserror::Error)]
pub enum TenantsFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not the shape above: where, and the parser's message
    /// with every quoted value taken out (a line may hold a token).
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A rule of the module documentation is broken.
    #[error("{0}")]
    Rule(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    tenant: Vec<TenantShape>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantShape {
    id: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    whatsapp: Vec<NumberShape>,
    #[serde(default)]
    sms_senders: Vec<String>,
    #[serde(default = "one")]
    fair_share: u32,
    /// The default of its sends without `quietHours` (the API's shape,
    /// with `time_zone` for `timeZone`).
    quiet_hours: Option<QuietShape>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuietShape {
    from: String,
    to: String,
    time_zone: String,
}

/// A tenant's default quiet hours, checked by the API's own rules.
fn quiet_hours(
    shape: Option<&QuietShape>,
    at: &str,
) -> Result<Option<crate::domain::schedule::QuietHours>, TenantsFileError> {
    let Some(q) = shape else {
        return Ok(None);
    };
    let value = serde_json::json!({"from": q.from, "to": q.to, "timeZone": q.time_zone});
    crate::domain::schedule::QuietHours::parse(&value, "quiet_hours")
        .map(Some)
        .map_err(|problems| {
            let (field, message) = &problems[0];
            rule(format!(
                "{at}: {} {message}",
                field.replace("timeZone", "time_zone")
            ))
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NumberShape {
    phone_number_id: String,
    token: String,
    max_mps: Option<u32>,
    waba_id: Option<String>,
}

fn one() -> u32 {
    1
}

/// What the file is checked against.
pub struct Known<'a> {
    /// The ids of `API_KEYS` (the gateway), or `None` where keys are not
    /// configured (the consumer, which reads the file for its numbers).
    pub key_ids: Option<&'a [String]>,
    /// Resolves a token reference: `env:NAME` and `secretsmanager:NAME`
    /// (the latter read from Secrets Manager before the configuration).
    pub token: &'a dyn Fn(&str) -> Option<String>,
    /// `TENANT_SECRET_PREFIX`: the secret names the process may read
    /// (the deployment grants those only); a reference outside it is refused.
    pub secret_prefix: Option<&'a str>,
    /// `WHATSAPP_PHONE_NUMBER_ID` and `INFOBIP_SENDER`: shared by the tenants
    /// that name none of their own, so no tenant may name them as its own.
    pub deployment: (Option<&'a str>, Option<&'a str>),
}

/// Reads and checks the file at `path`.
pub fn load(path: &str, known: &Known<'_>) -> Result<Vec<Tenant>, TenantsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TenantsFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, known)
}

/// Parses and checks the file's text.
pub fn parse(text: &str, known: &Known<'_>) -> Result<Vec<Tenant>, TenantsFileError> {
    let shape: FileShape = toml::from_str(text).map_err(|e| syntax(&e, text))?;
    if shape.tenant.is_empty() {
        return Err(rule("the file names no [[tenant]]".into()));
    }
    let mut tenants = Vec::with_capacity(shape.tenant.len());
    let mut owners = Owners::default();
    for (i, t) in shape.tenant.into_iter().enumerate() {
        let at = format!("tenant[{i}] ({:?})", t.id);
        check_id(&t.id, &at)?;
        owners.claim("tenant id", &t.id, &t.id)?;
        check_entry(&t, &at)?;
        for key in &t.keys {
            if known.key_ids.is_some_and(|ids| !ids.contains(key)) {
                return Err(rule(format!("{at}: key id {key:?} is not in API_KEYS")));
            }
            owners.claim("key", key, &t.id)?;
        }
        for sender in &t.sms_senders {
            owners.claim("SMS sender", &normal_sender(sender), &t.id)?;
            if known
                .deployment
                .1
                .is_some_and(|d| normal_sender(d) == normal_sender(sender))
            {
                return Err(shared(&at, "SMS sender", sender, "INFOBIP_SENDER"));
            }
        }
        let mut numbers = Vec::with_capacity(t.whatsapp.len());
        for (j, n) in t.whatsapp.into_iter().enumerate() {
            let at = format!("{at}: whatsapp[{j}]");
            owners.claim("WhatsApp number", &n.phone_number_id, &t.id)?;
            if known.deployment.0 == Some(n.phone_number_id.as_str()) {
                return Err(shared(
                    &at,
                    "number",
                    &n.phone_number_id,
                    "WHATSAPP_PHONE_NUMBER_ID",
                ));
            }
            numbers.push(number(n, &at, known)?);
        }
        let quiet_hours = quiet_hours(t.quiet_hours.as_ref(), &at)?;
        tenants.push(Tenant {
            quiet_hours,
            id: t.id.as_str().into(),
            keys: t.keys,
            numbers,
            sms_senders: t.sms_senders,
            fair_share: t.fair_share,
        });
    }
    if let Some(ids) = known.key_ids
        && let Some(orphan) = ids.iter().find(|k| !owners.has("key", k))
    {
        return Err(rule(format!(
            "API key {orphan:?} belongs to no tenant: name it in one tenant's keys"
        )));
    }
    Ok(tenants)
}

/// A parse error without the file's text: the parser quotes the line it
/// stopped at, and its message may quote a value.
fn syntax(e: &toml::de::Error, text: &str) -> TenantsFileError {
    let start = e.span().map_or(0, |span| span.start.min(text.len()));
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let mut message = String::new();
    for (i, part) in e.message().split('"').enumerate() {
        message.push_str(if i % 2 == 1 { "\"…" } else { part });
        if i % 2 == 1 {
            message.push('"');
        }
    }
    TenantsFileError::Syntax {
        line,
        column,
        message,
    }
}

/// The refusal of a tenant naming the deployment's own sender.
fn shared(at: &str, what: &str, value: &str, var: &str) -> TenantsFileError {
    rule(format!(
        "{at}: the {what} {value:?} is {var}, the deployment's, which every tenant without one of its own \
         shares (and whose consent they share): leave it out of the file, or unset {var}"
    ))
}

/// Which tenant claimed each key, number, sender and id.
#[derive(Default)]
struct Owners(HashMap<(&'static str, String), String>);

impl Owners {
    fn claim(
        &mut self,
        what: &'static str,
        value: &str,
        tenant: &str,
    ) -> Result<(), TenantsFileError> {
        match self.0.insert((what, value.to_owned()), tenant.to_owned()) {
            Some(first) if first == tenant => Err(rule(format!(
                "tenant {tenant:?} names the {what} {value:?} twice"
            ))),
            Some(first) => Err(rule(format!(
                "the {what} {value:?} is in two tenants, {first:?} and {tenant:?}"
            ))),
            None => Ok(()),
        }
    }

    fn has(&self, what: &'static str, value: &str) -> bool {
        self.0.contains_key(&(what, value.to_owned()))
    }
}

/// A tenant id is a label in metrics, a key prefix in DynamoDB and SQS's
/// `MessageGroupId`: short, lower case, no separators of ours.
fn check_id(id: &str, at: &str) -> Result<(), TenantsFileError> {
    let ok = (1..=64).contains(&id.len())
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(rule(format!(
            "{at}: id must be 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}

fn check_entry(t: &TenantShape, at: &str) -> Result<(), TenantsFileError> {
    if !(1..=1000).contains(&t.fair_share) {
        return Err(rule(format!("{at}: fair_share must be 1 to 1000")));
    }
    if let Some(bad) = t
        .sms_senders
        .iter()
        .find(|s| crate::domain::sms::sender_problem(s.trim_start_matches('+')).is_some())
    {
        return Err(rule(format!(
            "{at}: SMS sender {bad:?} is not one operators accept"
        )));
    }
    Ok(())
}

fn number(n: NumberShape, at: &str, known: &Known<'_>) -> Result<Number, TenantsFileError> {
    if n.phone_number_id.is_empty() || !n.phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(rule(format!(
            "{at}: phone_number_id must be the numeric id from the WhatsApp Manager"
        )));
    }
    if n.waba_id
        .as_ref()
        .is_some_and(|w| w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(rule(format!(
            "{at}: waba_id must be the numeric WhatsApp Business Account id"
        )));
    }
    if !(n.token.starts_with("env:") || n.token.starts_with("secretsmanager:")) {
        // The value is not repeated: it may be the token itself.
        return Err(rule(format!(
            "{at}: token must be a reference, env:NAME or secretsmanager:NAME, not a literal value"
        )));
    }
    if let (Some(name), Some(prefix)) =
        (n.token.strip_prefix("secretsmanager:"), known.secret_prefix)
        && !name.starts_with(prefix)
    {
        return Err(rule(format!(
            "{at}: the token {} is outside TENANT_SECRET_PREFIX ({prefix:?}), which this deployment may read",
            n.token
        )));
    }
    let token = (known.token)(&n.token)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| rule(format!("{at}: the token {} is not set", n.token)))?;
    if let Some(mps) = n.max_mps
        && !(1..=1000).contains(&mps)
    {
        return Err(rule(format!("{at}: max_mps must be 1 to 1000")));
    }
    Ok(Number {
        phone_number_id: n.phone_number_id,
        token: Secret::new(token.trim()),
        max_mps: n.max_mps,
        waba_id: n.waba_id,
    })
}

/// A sender as compared: a number's `+` does not make it another sender.
pub fn normal_sender(sender: &str) -> String {
    sender.trim_start_matches('+').to_owned()
}

fn rule(message: String) -> TenantsFileError {
    TenantsFileError::Rule(message)
}

/// The `secretsmanager:` references of the file at `path` (read before the
/// configuration, with the other secrets); none when it cannot be read (the
/// configuration then says why).
pub fn secret_references(path: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(shape) = toml::from_str::<FileShape>(&text) else {
        return Vec::new();
    };
    shape
        .tenant
        .iter()
        .flat_map(|t| &t.whatsapp)
        .filter(|n| n.token.starts_with("secretsmanager:"))
        .map(|n| n.token.clone())
        .collect()
}
