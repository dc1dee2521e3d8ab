//! The gateway's templates: a cache every check reads (one snapshot per
//! request or batch), filled from the store at start, by the sync and by
//! status webhooks.
//!
//! The sync (`sync.rs`) lists each account every `TEMPLATE_SYNC_SECS`.
//! An account whose last listing is older than twice the period plus a
//! minute (or that was never listed) is stale: its sends go unchecked and
//! `/health` says so.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::store::{TemplateStore, apply_status};
use super::{StatusChange, Template, sendable};
use crate::channels::whatsapp::templates::TemplateLister;
use crate::clock::{format_ms, now_ms};
use crate::config::{Secret, TemplateConfig};
use crate::domain::validation::FieldError;
use crate::status::StoreError;

/// Longest between two reloads of the store's copy.
pub(super) const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Why a template send is refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such name, or not in that language.
    NotFound { name: String, language: String },
    /// Not `APPROVED`.
    NotApproved {
        name: String,
        language: String,
        status: String,
    },
    /// The parameters do not fit the template.
    Parameters(Vec<FieldError>),
}

/// One account's templates as this process knows them.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub(super) synced_ms: Option<i64>,
    /// name → language → template.
    pub(super) by_key: HashMap<String, HashMap<String, Template>>,
    pub(super) last_error: Option<String>,
    /// When this gateway last listed the account, or found another one of
    /// the fleet holding its listing (Unix ms).
    pub(super) checked_ms: Option<i64>,
}

impl Account {
    /// Every template, in no order.
    pub(super) fn templates(&self) -> impl Iterator<Item = &Template> {
        self.by_key.values().flat_map(HashMap::values)
    }
}

/// What every check reads: the accounts at one moment (each behind its own
/// `Arc`, so a change copies one account, not all).
pub type Snapshot = Arc<HashMap<String, Arc<Account>>>;

/// An account to list.
#[derive(Debug)]
pub(super) struct Listed {
    pub(super) waba_id: String,
    pub(super) token: Secret,
}

/// The templates of this deployment's accounts.
#[derive(Debug)]
pub struct Templates {
    pub(super) every: Duration,
    /// `phone_number_id` → its account.
    numbers: HashMap<String, String>,
    pub(super) accounts: Vec<Listed>,
    pub(super) lister: Option<TemplateLister>,
    pub(super) store: std::sync::OnceLock<Arc<dyn TemplateStore>>,
    cache: RwLock<Snapshot>,
    /// Wakes the sync for the accounts in `wanted` (a send or a webhook
    /// named a template not listed yet, or one edited).
    pub(super) resync: Notify,
    pub(super) wanted: std::sync::Mutex<std::collections::HashSet<String>>,
    /// This process, in the fleet's sync claims.
    pub(super) holder: String,
}

impl Templates {
    /// The accounts `config` names (none: every send goes unchecked).
    pub fn new(config: &TemplateConfig) -> Self {
        let numbers = config
            .accounts
            .iter()
            .flat_map(|a| a.number_ids.iter().map(|n| (n.clone(), a.waba_id.clone())))
            .collect();
        let accounts = config
            .accounts
            .iter()
            .map(|a| Listed {
                waba_id: a.waba_id.clone(),
                token: a.token.clone(),
            })
            .collect();
        let lister = (!config.accounts.is_empty())
            .then(|| TemplateLister::new(&config.base_url, &config.api_version, config.timeout))
            .and_then(|built| {
                built
                    .inspect_err(|e| tracing::error!(error.message = %e, "cannot build the template sync's HTTP client"))
                    .ok()
            });
        Self {
            every: config.every,
            numbers,
            accounts,
            lister,
            store: std::sync::OnceLock::new(),
            cache: RwLock::default(),
            resync: Notify::new(),
            wanted: std::sync::Mutex::default(),
            holder: uuid::Uuid::now_v7().to_string(),
        }
    }

    /// Keeps the templates in `store` too (set once, at start).
    pub fn set_store(&self, store: Arc<dyn TemplateStore>) {
        let _ = self.store.set(store);
    }

    /// True when some account is configured.
    pub fn configured(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// The accounts now: one read lock, for a request or a whole batch.
    pub fn snapshot(&self) -> Snapshot {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn update(&self, waba_id: &str, change: impl FnOnce(&mut Account)) {
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut accounts = HashMap::clone(&cache);
        change(Arc::make_mut(
            accounts.entry(waba_id.to_owned()).or_default(),
        ));
        *cache = Arc::new(accounts);
    }

    /// Asks the sync to list `waba_id` soon (at most once every ten
    /// minutes: see `sync.rs`).
    fn want(&self, waba_id: &str) {
        self.wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(waba_id.to_owned());
        self.resync.notify_one();
    }

    /// Checks a WhatsApp template send from `number_id` (`template` is the
    /// message's `template` object) against `snapshot`. Unchecked (`Ok`) when
    /// the number has no account, or its account is stale.
    pub fn check(
        &self,
        snapshot: &Snapshot,
        number_id: Option<&str>,
        template: &Value,
    ) -> Result<(), Refusal> {
        let Some((waba_id, account)) = number_id
            .and_then(|n| self.numbers.get(n))
            .and_then(|waba| Some((waba, snapshot.get(waba)?)))
        else {
            return Ok(());
        };
        if self.stale(account, now_ms()) {
            return Ok(());
        }
        let name = template
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let language = match template.get("language") {
            Some(Value::String(code)) => code.as_str(),
            Some(other) => other
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            None => "",
        };
        let Some(found) = account.by_key.get(name).and_then(|l| l.get(language)) else {
            self.want(waba_id);
            return Err(Refusal::NotFound {
                name: name.to_owned(),
                language: language.to_owned(),
            });
        };
        if !sendable(&found.status) {
            return Err(Refusal::NotApproved {
                name: name.to_owned(),
                language: language.to_owned(),
                status: found.status.clone(),
            });
        }
        match &found.parameters {
            Some(takes) => {
                let errors = super::check::parameters(takes, template);
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(Refusal::Parameters(errors))
                }
            }
            None => Ok(()),
        }
    }

    pub(super) fn stale(&self, account: &Account, now: i64) -> bool {
        let limit = i64::try_from((self.every * 2 + RELOAD_EVERY).as_millis()).unwrap_or(i64::MAX);
        account.synced_ms.is_none_or(|at| now - at > limit)
    }

    /// Applies status webhooks at once: to the store, then to this cache.
    /// Webhooks for accounts this deployment does not list are dropped.
    pub async fn change_status(&self, changes: Vec<StatusChange>) -> Result<(), StoreError> {
        for change in changes {
            if !self.accounts.iter().any(|a| a.waba_id == change.waba_id) {
                tracing::info!(waba_id = %change.waba_id, "a template webhook for an account this deployment does not list; dropped");
                continue;
            }
            if let Some(store) = self.store.get() {
                store.change_template_status(change.clone()).await?;
            }
            tracing::info!(waba_id = %change.waba_id, template = %change.name, language = %change.language,
                status = change.status.as_deref().unwrap_or("(edited)"), "a template changed");
            let mut relist = change.status.is_none();
            self.update(&change.waba_id, |account| {
                let mut list: Vec<Template> = account.templates().cloned().collect();
                relist |= !list
                    .iter()
                    .any(|t| t.name == change.name && t.language == change.language);
                apply_status(&mut list, &change);
                relist |= list.iter().any(|t| {
                    t.parameters.is_none() && t.name == change.name && t.language == change.language
                });
                account.by_key = keyed(list);
            });
            if relist {
                self.want(&change.waba_id);
            }
        }
        Ok(())
    }

    /// The templates of `wabas` (all when `None`), for `GET /api/v1/templates`.
    pub fn list(&self, wabas: Option<&[String]>) -> Value {
        let snapshot = self.snapshot();
        let now = now_ms();
        let mut ids: Vec<&String> = snapshot
            .keys()
            .filter(|w| wabas.is_none_or(|list| list.contains(w)))
            .collect();
        ids.sort();
        let mut templates = Vec::new();
        let mut accounts = Vec::new();
        for waba in ids {
            let account = &snapshot[waba];
            let synced_at = account.synced_ms.map(format_ms);
            accounts.push(
                json!({"wabaId": waba, "syncedAt": synced_at, "stale": self.stale(account, now)}),
            );
            let mut list: Vec<&Template> = account.templates().collect();
            list.sort_by(|a, b| (&a.name, &a.language).cmp(&(&b.name, &b.language)));
            for t in list {
                let mut entry = serde_json::to_value(t).unwrap_or_default();
                entry["syncedAt"] = json!(synced_at);
                templates.push(entry);
            }
        }
        json!({ "templates": templates, "accounts": accounts })
    }

    /// The accounts the numbers `number_ids` send from.
    pub fn accounts_of<'a>(&self, number_ids: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut wabas: Vec<String> = number_ids
            .filter_map(|n| self.numbers.get(n).cloned())
            .collect();
        wabas.sort();
        wabas.dedup();
        wabas
    }

    /// `/health`'s view: `stale` when an account's templates are not
    /// current (its sends go unchecked).
    pub fn health(&self) -> Option<Value> {
        if !self.configured() {
            return None;
        }
        let snapshot = self.snapshot();
        let now = now_ms();
        let accounts: Vec<Value> = self
            .accounts
            .iter()
            .map(|a| {
                let account = snapshot.get(&a.waba_id).cloned().unwrap_or_default();
                json!({
                    "wabaId": a.waba_id,
                    "syncedAt": account.synced_ms.map(format_ms),
                    "stale": self.stale(&account, now),
                    "lastError": account.last_error,
                    "checkedAt": account.checked_ms.map(format_ms),
                    "templates": account.templates().count(),
                })
            })
            .collect();
        let stale = accounts.iter().any(|a| a["stale"] == true);
        Some(
            json!({ "status": if stale { "stale" } else { "ok" }, "detail": { "accounts": accounts } }),
        )
    }
}

pub(super) fn keyed(templates: Vec<Template>) -> HashMap<String, HashMap<String, Template>> {
    let mut by_name: HashMap<String, HashMap<String, Template>> = HashMap::new();
    for t in templates {
        by_name
            .entry(t.name.clone())
            .or_default()
            .insert(t.language.clone(), t);
    }
    by_name
}
