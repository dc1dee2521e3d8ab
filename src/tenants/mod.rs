//! Tenants: who owns which API keys, WhatsApp numbers, SMS senders and
//! consent, and their share of delivery. Named by `TENANTS_FILE`
//! ([`file`]); without it there is one tenant, [`DEFAULT_TENANT`], with
//! every key, the deployment's number and any sender: stage two exactly.
//!
//! A tenant that names no WhatsApp number (or no SMS sender) uses the
//! deployment's (`WHATSAPP_PHONE_NUMBER_ID`; `INFOBIP_SENDER`), and consent
//! recorded from an inbound message to a number shared that way belongs to
//! every tenant using it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::contract::Channel;
use crate::secret::Secret;

pub mod file;

pub use crate::contract::DEFAULT_TENANT;

/// A tenant, as the file names it.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its id: a metrics label, a key prefix, SQS's `MessageGroupId`.
    pub id: Arc<str>,
    /// The API key ids that act for it.
    pub keys: Vec<String>,
    /// Its WhatsApp numbers, the first the default sender.
    pub numbers: Vec<Number>,
    /// Its SMS senders, the first the default.
    pub sms_senders: Vec<String>,
    /// Its weight in delivery scheduling.
    pub fair_share: u32,
    /// The quiet hours of its sends that name none.
    pub quiet_hours: Option<crate::domain::schedule::QuietHours>,
}

/// A WhatsApp number of a tenant.
#[derive(Debug, Clone)]
pub struct Number {
    /// The number's id in the Cloud API.
    pub phone_number_id: String,
    /// Its access token, resolved from the file's reference.
    pub token: Secret,
    /// Its own messages per second (else `WHATSAPP_MAX_MPS`).
    pub max_mps: Option<u32>,
    /// Its WhatsApp Business Account.
    pub waba_id: Option<String>,
}

/// Why a send cannot go from the sender it names (or from any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAllowed {
    /// The sender named is not one of the tenant's.
    Sender,
    /// The tenant has no WhatsApp number, and neither has the deployment.
    NoNumber,
}

/// The tenants of this deployment and what the deployment itself provides.
#[derive(Debug, Clone)]
pub struct Tenants {
    list: Vec<Tenant>,
    by_key: HashMap<String, usize>,
    /// True when `TENANTS_FILE` named them.
    configured: bool,
    /// `WHATSAPP_PHONE_NUMBER_ID`, for tenants that name no number.
    deployment_number: Option<String>,
    /// `INFOBIP_SENDER`, for tenants that name no sender.
    deployment_sender: Option<String>,
}

impl Default for Tenants {
    fn default() -> Self {
        Self::single(None, None)
    }
}

impl Tenants {
    /// No file: one tenant, `default`, with every key.
    pub fn single(deployment_number: Option<String>, deployment_sender: Option<String>) -> Self {
        Self {
            list: vec![Tenant {
                id: DEFAULT_TENANT.into(),
                keys: Vec::new(),
                numbers: Vec::new(),
                sms_senders: Vec::new(),
                fair_share: 1,
                quiet_hours: None,
            }],
            by_key: HashMap::new(),
            configured: false,
            deployment_number,
            deployment_sender,
        }
    }

    /// The tenants of a file ([`file::load`]).
    pub fn from_file(
        list: Vec<Tenant>,
        deployment_number: Option<String>,
        deployment_sender: Option<String>,
    ) -> Self {
        let by_key = list
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.keys.iter().map(move |k| (k.clone(), i)))
            .collect();
        Self {
            list,
            by_key,
            configured: true,
            deployment_number,
            deployment_sender,
        }
    }

    /// True when `TENANTS_FILE` named the tenants: reads are then scoped to
    /// the tenant, not the key.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// `WHATSAPP_PHONE_NUMBER_ID`, the number of tenants that name none.
    pub fn deployment_number(&self) -> Option<&str> {
        self.deployment_number.as_deref()
    }

    /// Every tenant.
    pub fn all(&self) -> &[Tenant] {
        &self.list
    }

    /// The tenant with `id`.
    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.list.iter().find(|t| &*t.id == id)
    }

    /// The tenant `key_id` acts for (`default` without a file).
    pub fn of_key(&self, key_id: &str) -> Arc<str> {
        self.by_key
            .get(key_id)
            .map_or_else(|| self.list[0].id.clone(), |&i| self.list[i].id.clone())
    }

    /// The weight of `tenant` in delivery scheduling (1 when unknown).
    pub fn share(&self, tenant: &str) -> u32 {
        self.get(tenant).map_or(1, |t| t.fair_share.max(1))
    }

    /// `tenant`'s default quiet hours.
    pub fn quiet_hours(&self, tenant: &str) -> Option<&crate::domain::schedule::QuietHours> {
        self.get(tenant).and_then(|t| t.quiet_hours.as_ref())
    }

    /// Every tenant's weight, for the embedded queue's lease.
    pub fn shares(&self) -> HashMap<String, u32> {
        self.list
            .iter()
            .map(|t| (t.id.to_string(), t.fair_share.max(1)))
            .collect()
    }

    /// The sender a send of `tenant` on `channel` goes from: `from` when the
    /// tenant may use it, its first when `from` is absent. `None` when the
    /// provider's default applies (no number or sender to name).
    pub fn sender(
        &self,
        tenant: &str,
        channel: Channel,
        from: Option<&str>,
    ) -> Result<Option<String>, NotAllowed> {
        // Infobip takes a numeric sender without its `+`.
        let spelled = |s: String| match channel {
            Channel::Sms => file::normal_sender(&s),
            Channel::Whatsapp => s,
        };
        Ok(self.resolve(tenant, channel, from)?.map(spelled))
    }

    fn resolve(
        &self,
        tenant: &str,
        channel: Channel,
        from: Option<&str>,
    ) -> Result<Option<String>, NotAllowed> {
        let Some(t) = self.get(tenant) else {
            return Err(NotAllowed::Sender);
        };
        // The tenant's own senders on `channel`, without collecting them:
        // this runs for every send.
        let own = |i: usize| match channel {
            Channel::Whatsapp => t.numbers.get(i).map(|n| n.phone_number_id.as_str()),
            Channel::Sms => t.sms_senders.get(i).map(String::as_str),
        };
        if let Some(first) = own(0) {
            return match from {
                None => Ok(Some(first.to_owned())),
                Some(f) => (0..)
                    .map_while(own)
                    .find(|s| same_sender(s, f))
                    .map(|s| Some(s.to_owned()))
                    .ok_or(NotAllowed::Sender),
            };
        }
        let deployment = match channel {
            Channel::Whatsapp => self.deployment_number.as_deref(),
            Channel::Sms => self.deployment_sender.as_deref(),
        };
        match (from, deployment) {
            // An SMS that names no sender goes from the account's default;
            // without a file, a WhatsApp message from the consumer's number
            // (stage two's envelopes named none).
            (None, _) if channel == Channel::Sms || !self.configured => Ok(None),
            // A tenant that names no number uses the deployment's, by name:
            // the consumer's first number may be another tenant's.
            (None, Some(d)) => Ok(Some(d.to_owned())),
            (None, None) => Err(NotAllowed::NoNumber),
            // Without a file, SMS senders are free-form, as in stage two.
            (Some(f), _) if channel == Channel::Sms && !self.configured => Ok(Some(f.to_owned())),
            (Some(f), Some(d)) if same_sender(d, f) => Ok(Some(d.to_owned())),
            (Some(_), _) => Err(NotAllowed::Sender),
        }
    }

    /// The tenants whose opt-outs hold back `tenant`'s send on `channel`:
    /// its own and, when it sends from the deployment's number (it names
    /// none of its own on `channel`), those recorded before `TENANTS_FILE`
    /// (tenant `default`: consent given to that number, which it shares).
    /// Not when the file has a tenant `default` of its own.
    pub fn consent_holders<'a>(&self, tenant: &'a str, channel: Channel) -> ConsentHolders<'a> {
        let shares_deployment = self.configured
            && tenant != DEFAULT_TENANT
            && self.get(DEFAULT_TENANT).is_none()
            && self.get(tenant).is_some_and(|t| match channel {
                Channel::Whatsapp => t.numbers.is_empty(),
                Channel::Sms => t.sms_senders.is_empty(),
            });
        ConsentHolders {
            own: Some(tenant),
            deployment: shares_deployment,
        }
    }

    /// The tenants whose consent an inbound message to `receiver` (a WhatsApp
    /// `phone_number_id`, an SMS's `to`) on `channel` speaks for: the
    /// tenant that owns it, else every tenant that uses the deployment's,
    /// else (a number no tenant names) every tenant: a STOP is never dropped.
    /// With a file, a message not to a tenant's own number also speaks for
    /// `default`, the consent recorded before the file (see
    /// [`Tenants::consent_holders`]).
    pub fn owners_of(&self, channel: Channel, receiver: Option<&str>) -> Vec<Arc<str>> {
        let owns = |t: &Tenant, r: &str| match channel {
            Channel::Whatsapp => t.numbers.iter().any(|n| n.phone_number_id == r),
            Channel::Sms => t.sms_senders.iter().any(|s| same_sender(s, r)),
        };
        if let Some(r) = receiver
            && let Some(t) = self.list.iter().find(|t| owns(t, r))
        {
            return vec![t.id.clone()];
        }
        let sharing: Vec<Arc<str>> = self
            .list
            .iter()
            .filter(|t| match channel {
                Channel::Whatsapp => t.numbers.is_empty(),
                Channel::Sms => t.sms_senders.is_empty(),
            })
            .map(|t| t.id.clone())
            .collect();
        let mut owners = if sharing.is_empty() {
            // A number no tenant owns or shares (removed from the file, or
            // the account's other numbers): a STOP to it must not be lost,
            // so it speaks for every tenant.
            tracing::warn!(
                channel = channel.as_str(),
                receiver = receiver.unwrap_or("-"),
                "an inbound message to a number no tenant names; its consent applies to every tenant"
            );
            self.list.iter().map(|t| t.id.clone()).collect()
        } else {
            sharing
        };
        // The deployment's number keeps the consent recorded before the
        // file (tenant `default`) current: a START to it lifts an old STOP.
        if self.configured && self.get(DEFAULT_TENANT).is_none() {
            owners.push(DEFAULT_TENANT.into());
        }
        owners
    }

    /// The WhatsApp numbers `tenant` sends from: its own, else the
    /// deployment's.
    pub fn whatsapp_numbers(&self, tenant: &str) -> Vec<&str> {
        match self.get(tenant) {
            Some(t) if !t.numbers.is_empty() => t
                .numbers
                .iter()
                .map(|n| n.phone_number_id.as_str())
                .collect(),
            _ => self.deployment_number.as_deref().into_iter().collect(),
        }
    }

    /// Every WhatsApp number the file names, with its tenant.
    pub fn numbers(&self) -> impl Iterator<Item = (&Tenant, &Number)> {
        self.list
            .iter()
            .flat_map(|t| t.numbers.iter().map(move |n| (t, n)))
    }
}

/// The tenants whose opt-outs a send honours, from
/// [`Tenants::consent_holders`]: the sender's tenant, then maybe `default`.
#[derive(Debug, Clone, Copy)]
pub struct ConsentHolders<'a> {
    own: Option<&'a str>,
    deployment: bool,
}

impl<'a> Iterator for ConsentHolders<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if let Some(own) = self.own.take() {
            return Some(own);
        }
        std::mem::take(&mut self.deployment).then_some(DEFAULT_TENANT)
    }
}

/// What a caller may read: with `TENANTS_FILE`, every message of its
/// tenant; without it, what its own key sent (stage two); an admin
/// (`ADMIN_KEY_IDS`), everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The messages this key sent.
    Key(String),
    /// The messages of this tenant, whichever of its keys sent them.
    Tenant(String),
    /// Everything.
    Admin,
}

impl Scope {
    /// True when a message sent by `api_key_id` for `tenant` is in scope.
    pub fn covers(&self, api_key_id: &str, tenant: &str) -> bool {
        match self {
            Self::Key(k) => k == api_key_id,
            Self::Tenant(t) => t == tenant,
            Self::Admin => true,
        }
    }
}

impl Tenants {
    /// The scope of a caller with `key_id`, of `tenant`.
    pub fn scope(&self, key_id: &str, tenant: &str, admin: bool) -> Scope {
        if admin {
            Scope::Admin
        } else if self.configured {
            Scope::Tenant(tenant.to_owned())
        } else {
            Scope::Key(key_id.to_owned())
        }
    }
}

/// Two spellings of one sender: `+14155550100` and `14155550100`.
fn same_sender(a: &str, b: &str) -> bool {
    a.trim_start_matches('+') == b.trim_start_matches('+')
}

#[cfg(test)]
mod tests;
