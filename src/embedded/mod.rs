//! The embedded default: a durable queue on local disk and an in-process worker
//! that delivers through the same pipeline as `herald-consumer`. Used when no
//! `SNS_TOPIC_ARN` is set, so Herald runs whole on one machine.
//!
//! One writer thread owns the SQLite connection and applies requests in batches:
//! every enqueue and settlement that arrives while a commit is running joins the
//! next transaction (group commit), so durability costs one fsync per batch
//! rather than one per message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::contract::Envelope;
use crate::optout::{OptOut, OptOutUpdate};
use crate::status::{BoxFuture, Inbound, MessageRecord, StoreError, Update};
use crate::tenants::Scope;
use outbox::{EventOutcome, OutboxEvent};

mod cancel;
mod counters;
pub mod downloader;
pub mod downloads;
mod envelopes;
mod error;
pub mod event_sender;
pub mod fair;
pub mod opt_outs;
pub mod outbox;
mod requests;
mod schema;
pub mod search;
pub mod statuses;
pub mod store;
pub mod templates;
pub mod windows;
pub mod worker;
mod writer;

pub use crate::clock::now_ms;
pub use envelopes::Settlement;
pub use error::QueueError;
pub use store::{DeadLetter, DeadLetterKind, Leased, Stats};
pub use worker::Worker;

use store::Store;
use writer::{Counters, EXPIRY_EVERY, Request, writer_loop};

/// A handle to the queue; cheap to clone. The writer thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct EmbeddedQueue {
    requests: mpsc::UnboundedSender<Request>,
    data_dir: PathBuf,
    counters: Arc<Counters>,
    /// Wakes the worker when an envelope is enqueued.
    pub(crate) enqueued: Arc<tokio::sync::Notify>,
    /// Wakes the event sender when an event may have been queued.
    pub(crate) events_queued: Arc<tokio::sync::Notify>,
    /// Woken when an inbound message may have queued a media download.
    pub(crate) downloads_queued: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedQueue {
    /// Opens the queue under `data_dir` (created if missing) and starts its writer
    /// thread. `max_bytes` > 0 caps the database's size.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<Self, QueueError> {
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| QueueError::Open {
            dir: data_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_error(Box::new(e)))?;
        let data_dir = std::fs::canonicalize(data_dir).map_err(|e| open_error(Box::new(e)))?;
        let store = Store::open(&data_dir, max_bytes).map_err(|e| open_error(Box::new(e)))?;
        let (depth, dead_letters) = store.counts().map_err(|e| open_error(Box::new(e)))?;
        let opt_outs = store.opt_outs().map_err(|e| open_error(Box::new(e)))?;
        let counters = Arc::new(Counters {
            depth: depth.into(),
            dead_letters: dead_letters.into(),
            opt_outs: opt_outs.into(),
            status_ttl_ms: (30 * 86_400_000).into(),
            ..Counters::default()
        });
        let (requests, receiver) = mpsc::unbounded_channel();
        let writer_counters = counters.clone();
        std::thread::Builder::new()
            .name("herald-queue-writer".into())
            .spawn(move || writer_loop(store, receiver, &writer_counters))
            .map_err(|e| open_error(Box::new(e)))?;
        // The timer holds a weak handle: the writer still stops when the
        // last queue handle is dropped, and the timer with it.
        let timer = requests.downgrade();
        std::thread::Builder::new()
            .name("herald-queue-expiry".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EXPIRY_EVERY);
                    match timer.upgrade() {
                        Some(requests) if requests.send(Request::Expire).is_ok() => {}
                        _ => break,
                    }
                }
            })
            .map_err(|e| open_error(Box::new(e)))?;
        Ok(Self {
            requests,
            data_dir,
            counters,
            enqueued: Default::default(),
            events_queued: Default::default(),
            downloads_queued: Default::default(),
        })
    }

    /// Keeps statuses for `ttl`, and queues events for the event sender when
    /// `emit_events` (an `EVENTS_WEBHOOK_URL` is configured).
    pub fn configure_statuses(&self, ttl: Duration, emit_events: bool) {
        self.counters
            .status_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::Relaxed);
        self.counters
            .emit_events
            .store(emit_events, Ordering::Relaxed);
    }

    /// Shares delivery between tenants in proportion to `shares`
    /// (`TENANTS_FILE`'s `fair_share`; 1 for a tenant not named).
    pub fn set_shares(&self, shares: std::collections::HashMap<String, u32>) {
        // The writer stops only when the last handle is dropped: this one
        // is alive.
        let _ = self.requests.send(Request::Shares(shares));
    }

    /// Where the database lives (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Request,
    ) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Stores an envelope durably; returns once its transaction is committed.
    /// An id already held, dead-lettered or recently delivered is not stored
    /// twice (and the call still succeeds: that envelope was accepted before).
    /// If the caller stops waiting before the writer reaches the envelope
    /// (its request timed out), the envelope is not written at all.
    pub async fn enqueue(&self, envelope: &Envelope) -> Result<(), QueueError> {
        let row = envelopes::Row::of(envelope);
        self.call(|reply| Request::Enqueue { row, reply }).await?;
        self.enqueued.notify_one();
        Ok(())
    }

    /// Leases up to `limit` due envelopes for `lease_ms`.
    pub async fn lease(&self, lease_ms: i64, limit: usize) -> Result<Vec<Leased>, QueueError> {
        self.call(|reply| Request::Lease {
            lease_ms,
            limit,
            reply,
        })
        .await
    }

    /// Records how a leased envelope's delivery ended.
    pub async fn settle(&self, id: String, settlement: Settlement) -> Result<(), QueueError> {
        self.call(|reply| Request::Settle {
            id,
            settlement,
            reply,
        })
        .await
    }

    /// Merges statuses and records inbound messages (with their events) in one
    /// commit.
    pub async fn record_statuses(
        &self,
        updates: Vec<Update>,
        inbound: Vec<Inbound>,
    ) -> Result<(), QueueError> {
        // A report that fails over queues an envelope: wake the worker for it.
        let has_inbound = !inbound.is_empty();
        let may_enqueue = updates.iter().any(|u| match u {
            Update::Provider { entry, .. } => entry.fails_over(),
            // Early reports merged by the send's write may fail over too.
            Update::Message {
                provider_message_id,
                ..
            } => provider_message_id.is_some(),
        });
        self.call(|reply| Request::Statuses {
            updates,
            inbound,
            reply,
        })
        .await?;
        if has_inbound {
            self.downloads_queued.notify_one();
        }
        if may_enqueue {
            self.enqueued.notify_one();
        }
        if self.counters.emit_events.load(Ordering::Relaxed) {
            self.events_queued.notify_one();
        }
        Ok(())
    }

    /// Sends dead letter `id` back to the queue (attempts reset, a `redriven`
    /// status entry), or deletes it, if it is in `scope`. `false` when there
    /// is no such dead letter in it.
    pub async fn settle_dead_letter(
        &self,
        kind: DeadLetterKind,
        id: &str,
        scope: &Scope,
        redrive: bool,
    ) -> Result<bool, QueueError> {
        let found = Arc::new(AtomicBool::new(false));
        let (id, scope, flag) = (id.to_owned(), scope.clone(), found.clone());
        self.call(|reply| Request::DeadLetter {
            kind,
            id,
            scope,
            redrive,
            found: flag,
            reply,
        })
        .await?;
        let found = found.load(Ordering::Relaxed);
        match kind {
            _ if !(found && redrive) => {}
            DeadLetterKind::Messages => self.enqueued.notify_one(),
            DeadLetterKind::Events => self.events_queued.notify_one(),
        }
        Ok(found)
    }

    /// Applies opt-out changes (with their events) in one commit.
    pub async fn change_opt_outs(&self, updates: Vec<OptOutUpdate>) -> Result<(), QueueError> {
        self.call(|reply| Request::OptOuts { updates, reply })
            .await?;
        if self.counters.emit_events.load(Ordering::Relaxed) {
            self.events_queued.notify_one();
        }
        Ok(())
    }

    /// `tenant`'s opt-out of `number`, as committed (from memory: no query).
    pub fn opt_out(&self, tenant: &str, number: &str) -> Option<OptOut> {
        self.counters
            .opt_outs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&crate::optout::consent_key(tenant, number))
            .cloned()
    }

    /// The status record of message `id`, if it is in `scope`.
    pub async fn status(
        &self,
        id: &str,
        scope: &crate::tenants::Scope,
    ) -> Result<Option<MessageRecord>, QueueError> {
        let (id, scope) = (id.to_owned(), scope.clone());
        self.call(|reply| Request::GetStatus { id, scope, reply })
            .await
    }

    /// A page of `search`, newest first.
    pub async fn search(
        &self,
        search: &crate::search::Search,
    ) -> Result<crate::search::Found, QueueError> {
        let search = search.clone();
        self.call(|reply| Request::Search { search, reply }).await
    }

    /// The counters of `query`'s range.
    pub async fn counts(
        &self,
        query: &crate::search::StatsQuery,
    ) -> Result<Vec<crate::search::Bucket>, QueueError> {
        let query = query.clone();
        self.call(|reply| Request::Counts { query, reply }).await
    }

    /// Takes up to `limit` due events from the outbox, held for `hold_ms`.
    pub async fn lease_events(
        &self,
        hold_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, QueueError> {
        self.call(|reply| Request::LeaseEvents {
            hold_ms,
            limit,
            reply,
        })
        .await
    }

    /// Takes up to `limit` due media downloads for `hold_ms`.
    pub async fn lease_downloads(
        &self,
        hold_ms: i64,
        limit: usize,
    ) -> Result<Vec<downloads::Job>, QueueError> {
        self.call(|reply| Request::LeaseDownloads {
            hold_ms,
            limit,
            reply,
        })
        .await
    }

    /// Records how a media download ended (with its event, when done).
    pub async fn settle_download(
        &self,
        provider_id: String,
        outcome: downloads::Outcome,
    ) -> Result<(), QueueError> {
        self.call(|reply| Request::SettleDownload {
            provider_id,
            outcome,
            reply,
        })
        .await?;
        self.events_queued.notify_one();
        Ok(())
    }

    /// Records how sending an event ended.
    pub async fn settle_event(&self, id: String, outcome: EventOutcome) -> Result<(), QueueError> {
        self.call(|reply| Request::SettleEvent { id, outcome, reply })
            .await
    }

    /// Depth, oldest age and dead letters: two counters and one index lookup.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        self.counters.health_reads.fetch_add(1, Ordering::Relaxed);
        let (oldest, waiting) = self.call(|reply| Request::OldestCreated { reply }).await?;
        Ok(Stats {
            depth: self.counters.depth.load(Ordering::Relaxed),
            oldest_age_ms: oldest.map(|t| (now_ms() - t).max(0)),
            dead_letters: self.counters.dead_letters.load(Ordering::Relaxed),
            scheduled_waiting: waiting,
        })
    }

    /// How many times [`EmbeddedQueue::stats`] has read the database.
    pub fn stats_reads(&self) -> u64 {
        self.counters.health_reads.load(Ordering::Relaxed)
    }

    /// The newest dead letters of `kind` in `scope`.
    pub async fn dead_letters(
        &self,
        kind: DeadLetterKind,
        limit: usize,
        scope: &Scope,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let scope = scope.clone();
        self.call(|reply| Request::DeadLetters {
            kind,
            limit,
            scope,
            reply,
        })
        .await
    }

    /// Makes every later write fail as a full disk does (`true`), or work again
    /// (`false`). For tests of what Herald does when the disk fills up.
    #[doc(hidden)]
    pub fn simulate_full_disk(&self, on: bool) {
        self.counters
            .simulate_full_disk
            .store(on, Ordering::Relaxed);
    }

    /// Makes the writer pause for `delay` after each commit before answering,
    /// as a slow fsync would. For tests of callers that give up meanwhile.
    #[doc(hidden)]
    pub fn simulate_slow_commit(&self, delay: Duration) {
        self.counters
            .simulate_slow_commit_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl crate::search::SearchStore for EmbeddedQueue {
    fn search<'a>(
        &'a self,
        search: &'a crate::search::Search,
    ) -> BoxFuture<'a, Result<crate::search::Found, StoreError>> {
        Box::pin(async move { Ok(EmbeddedQueue::search(self, search).await?) })
    }

    fn counts<'a>(
        &'a self,
        query: &'a crate::search::StatsQuery,
    ) -> BoxFuture<'a, Result<Vec<crate::search::Bucket>, StoreError>> {
        Box::pin(async move { Ok(EmbeddedQueue::counts(self, query).await?) })
    }
}

impl crate::status::StatusStore for EmbeddedQueue {
    fn record(
        &self,
        updates: Vec<Update>,
        inbound: Vec<Inbound>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { Ok(self.record_statuses(updates, inbound).await?) })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
        scope: &'a crate::tenants::Scope,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        Box::pin(async move { Ok(self.status(id, scope).await?) })
    }

    fn cancel<'a>(
        &'a self,
        ids: &'a [String],
        scope: &'a crate::tenants::Scope,
        batch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<crate::status::Cancellation>, StoreError>> {
        Box::pin(async move {
            let outcome = Arc::new(std::sync::Mutex::new(Vec::new()));
            let (ids, scope, shared) = (ids.to_vec(), scope.clone(), outcome.clone());
            let batch = batch.map(str::to_owned);
            self.call(|reply| Request::Cancel {
                ids,
                scope,
                batch,
                outcome: shared,
                reply,
            })
            .await?;
            if self.counters.emit_events.load(Ordering::Relaxed) {
                self.events_queued.notify_one();
            }
            let outcomes = std::mem::take(
                &mut *outcome
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            Ok(outcomes)
        })
    }
}

impl crate::window::store::WindowStore for EmbeddedQueue {
    fn window<'a>(
        &'a self,
        number_id: &'a str,
        person: &'a str,
    ) -> BoxFuture<'a, Result<crate::window::Window, StoreError>> {
        let (number_id, person) = (number_id.to_owned(), person.to_owned());
        Box::pin(async move {
            let cached = self
                .counters
                .windows
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&(number_id.clone(), person.clone()))
                .copied();
            if let Some(window) = cached {
                return Ok(window);
            }
            Ok(self
                .call(|reply| Request::GetWindow {
                    number_id,
                    person,
                    reply,
                })
                .await?)
        })
    }

    fn close_windows(
        &self,
        closures: Vec<crate::window::Closure>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            Ok(self
                .call(|reply| Request::CloseWindows { closures, reply })
                .await?)
        })
    }

    fn received<'a>(
        &'a self,
        provider_message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::window::Received>, StoreError>> {
        let provider_id = provider_message_id.to_owned();
        Box::pin(async move {
            Ok(self
                .call(|reply| Request::GetReceived { provider_id, reply })
                .await?)
        })
    }
}

impl crate::templates::store::TemplateStore for EmbeddedQueue {
    fn templates<'a>(
        &'a self,
        waba_id: &'a str,
    ) -> BoxFuture<'a, Result<crate::templates::store::Stored, StoreError>> {
        let waba_id = waba_id.to_owned();
        Box::pin(async move {
            Ok(self
                .call(|reply| Request::GetTemplates { waba_id, reply })
                .await?)
        })
    }

    fn replace_templates<'a>(
        &'a self,
        waba_id: &'a str,
        listing: crate::templates::Listing,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let write = templates::TemplateWrite::Replace {
            waba_id: waba_id.to_owned(),
            listing,
        };
        Box::pin(async move {
            Ok(self
                .call(|reply| Request::Templates { write, reply })
                .await?)
        })
    }

    fn change_template_status(
        &self,
        change: crate::templates::StatusChange,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let write = templates::TemplateWrite::Status(change);
        Box::pin(async move {
            Ok(self
                .call(|reply| Request::Templates { write, reply })
                .await?)
        })
    }
}

impl crate::optout::store::OptOutStore for EmbeddedQueue {
    fn opt_out<'a>(
        &'a self,
        tenant: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<Option<OptOut>, StoreError>> {
        Box::pin(async move { Ok(EmbeddedQueue::opt_out(self, tenant, number)) })
    }

    fn change_opt_outs(&self, updates: Vec<OptOutUpdate>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { Ok(EmbeddedQueue::change_opt_outs(self, updates).await?) })
    }
}
