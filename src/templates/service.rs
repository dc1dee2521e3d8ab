//! The gateway's templates: a cache every check reads (one snapshot per
//! request or batch), filled from the store at start, by the sync and by
//! status webhooks.
//!
//! The sync lists each account from Graph every `TEMPLATE_SYNC_SECS`; with
//! DynamoDB only the gateway that claims the account's sync for the period
//! lists it, and every gateway reloads the store's copy at least once a
//! minute. A failing listing is tried again after 5 s, doubling up to the
//! period. An account whose last listing is older than twice the period
//! plus a minute (or that was never listed) is stale: its sends go
//! unchecked and `/health` says so.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::store::{Stored, TemplateStore, apply_status};
use super::{APPROVED, StatusChange, Template};
use crate::channels::whatsapp::templates::{ListError, TemplateLister};
use crate::clock::{format_ms, now_ms};
use crate::config::{Secret, TemplateConfig};
use crate::domain::validation::FieldError;
use crate::status::StoreError;

/// Longest between two reloads of the store's copy.
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// The first retry of a failing listing.
const FIRST_RETRY: Duration = Duration::from_secs(5);

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
    synced_ms: Option<i64>,
    /// name → language → template.
    by_key: HashMap<String, HashMap<String, Template>>,
    last_error: Option<String>,
}

/// What every check reads: the accounts at one moment.
pub type Snapshot = Arc<HashMap<String, Account>>;

/// An account to list.
#[derive(Debug)]
struct Listed {
    waba_id: String,
    token: Secret,
}

/// The templates of this deployment's accounts.
#[derive(Debug)]
pub struct Templates {
    every: Duration,
    /// `phone_number_id` → its account.
    numbers: HashMap<String, String>,
    accounts: Vec<Listed>,
    lister: Option<TemplateLister>,
    store: std::sync::OnceLock<Arc<dyn TemplateStore>>,
    cache: RwLock<Snapshot>,
    /// Wakes the sync (a status webhook named a template it has not listed).
    resync: Notify,
    /// This process, in the fleet's sync claims.
    holder: String,
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

    fn update(&self, waba_id: &str, change: impl FnOnce(&mut Account)) {
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut accounts = HashMap::clone(&cache);
        change(accounts.entry(waba_id.to_owned()).or_default());
        *cache = Arc::new(accounts);
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
        let Some(account) = number_id
            .and_then(|n| self.numbers.get(n))
            .and_then(|waba| snapshot.get(waba))
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
            self.resync.notify_one();
            return Err(Refusal::NotFound {
                name: name.to_owned(),
                language: language.to_owned(),
            });
        };
        if found.status != APPROVED {
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

    fn stale(&self, account: &Account, now: i64) -> bool {
        let limit = i64::try_from((self.every * 2 + RELOAD_EVERY).as_millis()).unwrap_or(i64::MAX);
        account.synced_ms.is_none_or(|at| now - at > limit)
    }

    /// Applies status webhooks at once: to the store, then to this cache.
    pub async fn change_status(&self, changes: Vec<StatusChange>) -> Result<(), StoreError> {
        for change in changes {
            if let Some(store) = self.store.get() {
                store.change_template_status(change.clone()).await?;
            }
            tracing::info!(waba_id = %change.waba_id, template = %change.name, language = %change.language,
                status = %change.status, "a template's status changed");
            let mut unknown = false;
            self.update(&change.waba_id, |account| {
                let mut list: Vec<Template> = account
                    .by_key
                    .drain()
                    .flat_map(|(_, languages)| languages.into_values())
                    .collect();
                unknown = !list
                    .iter()
                    .any(|t| t.name == change.name && t.language == change.language);
                apply_status(&mut list, &change);
                account.by_key = keyed(list);
            });
            if unknown {
                self.resync.notify_one();
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
            let mut list: Vec<&Template> =
                account.by_key.values().flat_map(HashMap::values).collect();
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
                    "templates": account.by_key.values().map(HashMap::len).sum::<usize>(),
                })
            })
            .collect();
        let stale = accounts.iter().any(|a| a["stale"] == true);
        Some(
            json!({ "status": if stale { "stale" } else { "ok" }, "detail": { "accounts": accounts } }),
        )
    }

    /// Loads the store's copy, then lists every account now and every
    /// period (see the module documentation) until `stop`.
    pub async fn run_until_stopped(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        self.load_stored().await;
        let mut next_sync: Vec<Instant> = vec![Instant::now(); self.accounts.len()];
        let mut last_sync: Vec<Option<Instant>> = vec![None; self.accounts.len()];
        let mut retry: Vec<Duration> = vec![FIRST_RETRY; self.accounts.len()];
        let tick = self.every.min(RELOAD_EVERY);
        loop {
            for (i, account) in self.accounts.iter().enumerate() {
                if Instant::now() >= next_sync[i] {
                    last_sync[i] = Some(Instant::now());
                    match self.sync(account).await {
                        Ok(()) => {
                            next_sync[i] = Instant::now() + self.every;
                            retry[i] = FIRST_RETRY;
                        }
                        Err(e) => {
                            tracing::warn!(waba_id = %account.waba_id, error.message = %e, retry_in_s = retry[i].as_secs(),
                                "could not sync the account's templates");
                            self.update(&account.waba_id, |a| a.last_error = Some(e.clone()));
                            next_sync[i] = Instant::now() + retry[i];
                            retry[i] = (retry[i] * 2).min(self.every);
                        }
                    }
                } else if let Err(e) = self.reload(&account.waba_id).await {
                    tracing::warn!(waba_id = %account.waba_id, error.message = %e, "could not reload the account's templates");
                }
            }
            let wake = next_sync
                .iter()
                .min()
                .copied()
                .unwrap_or_else(Instant::now)
                .min(Instant::now() + tick);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep_until(wake) => {}
                // Asked for sooner (a template not listed yet): at most once a
                // minute, so unknown names cannot spend Meta's rate limit.
                () = self.resync.notified() => {
                    for (next, last) in next_sync.iter_mut().zip(&last_sync) {
                        let soonest = last.map_or_else(Instant::now, |at| at + RELOAD_EVERY);
                        *next = (*next).min(soonest.max(Instant::now()));
                    }
                }
            }
        }
    }

    /// Loads every account's stored copy: what the store kept checks sends
    /// before the first listing answers.
    pub async fn load_stored(&self) {
        for account in &self.accounts {
            if let Err(e) = self.reload(&account.waba_id).await {
                tracing::warn!(waba_id = %account.waba_id, error.message = %e, "could not load the stored templates");
            }
        }
    }

    /// Lists `account` if this process holds its sync, else reloads the
    /// store's copy (another gateway lists it).
    async fn sync(&self, account: &Listed) -> Result<(), String> {
        if let Some(store) = self.store.get() {
            let mine = store
                .claim_template_sync(&account.waba_id, &self.holder, self.every)
                .await
                .map_err(|e| crate::telemetry::chain(&e))?;
            if !mine {
                return self
                    .reload(&account.waba_id)
                    .await
                    .map_err(|e| crate::telemetry::chain(&e));
            }
        }
        let lister = self
            .lister
            .as_ref()
            .ok_or("no HTTP client for the template sync")?;
        let listed = lister
            .list(&account.waba_id, &account.token)
            .await
            .map_err(|e: ListError| crate::telemetry::chain(&e))?;
        let templates: Vec<Template> = listed
            .iter()
            .filter_map(|t| Template::from_graph(&account.waba_id, t))
            .collect();
        let synced_ms = now_ms();
        if let Some(store) = self.store.get() {
            store
                .replace_templates(&account.waba_id, templates.clone(), synced_ms)
                .await
                .map_err(|e| crate::telemetry::chain(&e))?;
        }
        tracing::info!(waba_id = %account.waba_id, templates = templates.len(), "templates synced");
        self.set(
            &account.waba_id,
            Stored {
                synced_ms: Some(synced_ms),
                templates,
            },
        );
        Ok(())
    }

    /// Replaces the cache of `waba_id` with the store's copy.
    async fn reload(&self, waba_id: &str) -> Result<(), StoreError> {
        if let Some(store) = self.store.get() {
            let stored = store.templates(waba_id).await?;
            self.set(waba_id, stored);
        }
        Ok(())
    }

    fn set(&self, waba_id: &str, stored: Stored) {
        self.update(waba_id, |account| {
            account.synced_ms = stored.synced_ms;
            account.by_key = keyed(stored.templates);
            account.last_error = None;
        });
    }
}

fn keyed(templates: Vec<Template>) -> HashMap<String, HashMap<String, Template>> {
    let mut by_name: HashMap<String, HashMap<String, Template>> = HashMap::new();
    for t in templates {
        by_name
            .entry(t.name.clone())
            .or_default()
            .insert(t.language.clone(), t);
    }
    by_name
}
