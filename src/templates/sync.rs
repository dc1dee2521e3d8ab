//! The template sync: each account is listed from Graph at start and every
//! `TEMPLATE_SYNC_SECS`. With DynamoDB only the gateway that claims the
//! account for the period lists it (a failing one gives the claim back),
//! and every gateway reloads the store's copy once a minute. A failing
//! listing is tried again after 5 s, doubling up to the period. A template
//! a send or a webhook named that is not listed yet asks for a listing of
//! its account, at most once per [`RESYNC_EVERY`] (unknown names cannot
//! spend Meta's 200 calls an hour). A listing keeps what status webhooks
//! changed after it began ([`super::store::merge_listing`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::service::{Listed, RELOAD_EVERY, Templates, keyed};
use super::store::{Stored, merge_listing};
use super::{Listing, Template};
use crate::clock::now_ms;
use crate::status::StoreError;

/// The first retry of a failing listing.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The soonest an account is listed again when asked.
pub(super) const RESYNC_EVERY: Duration = Duration::from_secs(600);

/// When each account is listed next, and how long a failure waits.
struct Schedule {
    next: Vec<Instant>,
    last: Vec<Option<Instant>>,
    retry: Vec<Duration>,
    reload: Instant,
}

impl Templates {
    /// Loads the store's copy, then lists every account now and every
    /// period until `stop`.
    pub async fn run_until_stopped(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        self.load_stored().await;
        let n = self.accounts.len();
        let tick = self.every.min(RELOAD_EVERY);
        let mut at = Schedule {
            next: vec![Instant::now(); n],
            last: vec![None; n],
            retry: vec![FIRST_RETRY; n],
            reload: Instant::now() + tick,
        };
        loop {
            let reload = Instant::now() >= at.reload;
            if reload {
                at.reload = Instant::now() + tick;
            }
            for (i, account) in self.accounts.iter().enumerate() {
                if Instant::now() >= at.next[i] {
                    self.sync_now(i, account, &mut at).await;
                } else if reload && let Err(e) = self.reload(&account.waba_id).await {
                    tracing::warn!(waba_id = %account.waba_id, error.message = %e, "could not reload the account's templates");
                }
            }
            let wake = at
                .next
                .iter()
                .min()
                .copied()
                .unwrap_or(at.reload)
                .min(at.reload);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep_until(wake) => {}
                () = self.resync.notified() => self.bring_forward(&mut at),
            }
        }
    }

    async fn sync_now(&self, i: usize, account: &Listed, at: &mut Schedule) {
        at.last[i] = Some(Instant::now());
        match self.sync(account).await {
            Ok(()) => {
                at.next[i] = Instant::now() + self.every;
                at.retry[i] = FIRST_RETRY;
            }
            Err(e) => {
                tracing::warn!(waba_id = %account.waba_id, error.message = %e, retry_in_s = at.retry[i].as_secs(),
                    "could not sync the account's templates");
                self.update(&account.waba_id, |a| a.last_error = Some(e.clone()));
                at.next[i] = Instant::now() + at.retry[i];
                at.retry[i] = (at.retry[i] * 2).min(self.every);
            }
        }
    }

    /// The accounts asked for are listed as soon as [`RESYNC_EVERY`] allows.
    fn bring_forward(&self, at: &mut Schedule) {
        let wanted = std::mem::take(
            &mut *self
                .wanted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (i, account) in self.accounts.iter().enumerate() {
            if wanted.contains(&account.waba_id) {
                let soonest = at.last[i].map_or_else(Instant::now, |t| t + RESYNC_EVERY);
                at.next[i] = at.next[i].min(soonest.max(Instant::now()));
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
        let chain = |e: &StoreError| crate::telemetry::chain(e);
        if let Some(store) = self.store.get() {
            let mine = store
                .claim_template_sync(&account.waba_id, &self.holder, self.every)
                .await
                .map_err(|e| chain(&e))?;
            if !mine {
                self.reload(&account.waba_id).await.map_err(|e| chain(&e))?;
                self.update(&account.waba_id, |a| a.checked_ms = Some(now_ms()));
                return Ok(());
            }
        }
        let listed = self.list_from_graph(account).await;
        if let (Err(_), Some(store)) = (&listed, self.store.get())
            && let Err(e) = store
                .release_template_sync(&account.waba_id, &self.holder)
                .await
        {
            tracing::warn!(waba_id = %account.waba_id, error.message = %chain(&e), "could not give the template sync back");
        }
        let listing = listed?;
        let count = listing.templates.len();
        if let Some(store) = self.store.get() {
            store
                .replace_templates(&account.waba_id, listing.clone())
                .await
                .map_err(|e| chain(&e))?;
        }
        let cached: Vec<Template> = self
            .snapshot()
            .get(&account.waba_id)
            .map(|a| a.templates().cloned().collect())
            .unwrap_or_default();
        let templates = merge_listing(&listing, &cached);
        tracing::info!(waba_id = %account.waba_id, templates = count, "templates synced");
        self.set(
            &account.waba_id,
            Stored {
                synced_ms: Some(listing.synced_ms),
                templates,
            },
            true,
        );
        Ok(())
    }

    async fn list_from_graph(&self, account: &Listed) -> Result<Listing, String> {
        let lister = self
            .lister
            .as_ref()
            .ok_or("no HTTP client for the template sync")?;
        let started_ms = now_ms();
        let listed = lister
            .list(&account.waba_id, &account.token)
            .await
            .map_err(|e| crate::telemetry::chain(&e))?;
        Ok(Listing {
            templates: listed
                .iter()
                .filter_map(|t| Template::from_graph(&account.waba_id, t))
                .collect(),
            started_ms,
            synced_ms: now_ms(),
        })
    }

    /// Replaces the cache of `waba_id` with the store's copy.
    async fn reload(&self, waba_id: &str) -> Result<(), StoreError> {
        if let Some(store) = self.store.get() {
            let stored = store.templates(waba_id).await?;
            self.set(waba_id, stored, false);
        }
        Ok(())
    }

    /// Caches `stored`; a listing of this process's (`listed`) also clears
    /// the last error.
    fn set(&self, waba_id: &str, stored: Stored, listed: bool) {
        self.update(waba_id, |account| {
            account.synced_ms = stored.synced_ms;
            account.by_key = keyed(stored.templates);
            if listed {
                account.last_error = None;
                account.checked_ms = stored.synced_ms;
            }
        });
    }
}
