//! The embedded default: a durable queue on local disk and an in-process worker
//! that delivers through the same pipeline as `herald-consumer`. Used when no
//! `SNS_TOPIC_ARN` is set, so Herald runs whole on one machine.
//!
//! One writer thread owns the SQLite connection and applies requests in batches:
//! every enqueue and settlement that arrives while a commit is running joins the
//! next transaction (group commit), so durability costs one fsync per batch
//! rather than one per message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::contract::Envelope;
use crate::optout::{OptOut, OptOutUpdate};
use crate::status::{BoxFuture, Inbound, MessageRecord, StoreError, Update};
use statuses::{EventOutcome, OutboxEvent};

mod envelopes;
pub mod opt_outs;
pub mod statuses;
pub mod store;
pub mod worker;

pub use store::{DeadLetter, DeadLetterKind, Leased, Stats};
pub use worker::Worker;

use store::Store;

/// Most requests committed in one transaction.
const MAX_GROUP: usize = 1024;
/// How often expired statuses are removed (a timer asks the writer, so
/// expiry runs whether or not requests arrive), at most how many rows per
/// table one transaction removes, and how long one round may hold the
/// writer: up to a fifth of its time, which removes tens of thousands of rows
/// a second, far more than delivery writes (`bench status_expiry`).
const EXPIRY_EVERY: Duration = Duration::from_secs(1);
const EXPIRY_BATCH: usize = 2_000;
const EXPIRY_BUDGET: Duration = Duration::from_millis(200);

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database could not be opened: a bad or unwritable `HERALD_DATA_DIR`,
    /// or another gateway holds it.
    #[error("cannot open the embedded queue in {dir}: {source}")]
    Open {
        dir: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read or write failed (disk full, I/O error).
    #[error("embedded queue storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// The writer thread has stopped.
    #[error("the embedded queue is shut down")]
    Closed,
}

impl QueueError {
    /// True when the disk (or the configured size cap) is full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Storage(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DiskFull)
    }
}

/// How a leased envelope's delivery ended.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// Delivered: remove it.
    Delivered,
    /// Try again at `due_ms` (Unix ms). `refund`: the attempt was never made
    /// (the provider's circuit was open), so it does not count.
    Retry {
        due_ms: i64,
        error: String,
        refund: bool,
    },
    /// Give up: move it to the dead-letter table.
    DeadLetter { reason: String },
}

enum Request {
    /// The expiry timer's tick.
    Expire,
    Enqueue {
        id: String,
        body: String,
        api_key_id: String,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    Statuses {
        updates: Vec<Update>,
        inbound: Vec<Inbound>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    OptOuts {
        updates: Vec<OptOutUpdate>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    /// Redrive (`true`) or delete a dead letter; the reply says whether it
    /// existed for that key.
    DeadLetter {
        kind: DeadLetterKind,
        id: String,
        api_key_id: Option<String>,
        redrive: bool,
        found: Arc<AtomicBool>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    SettleEvent {
        id: String,
        outcome: EventOutcome,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    LeaseEvents {
        hold_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<OutboxEvent>, QueueError>>,
    },
    GetStatus {
        id: String,
        api_key_id: String,
        reply: oneshot::Sender<Result<Option<MessageRecord>, QueueError>>,
    },
    Settle {
        id: String,
        settlement: Settlement,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    Lease {
        lease_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Leased>, QueueError>>,
    },
    OldestCreated {
        reply: oneshot::Sender<Result<Option<i64>, QueueError>>,
    },
    DeadLetters {
        kind: DeadLetterKind,
        limit: usize,
        api_key_id: Option<String>,
        reply: oneshot::Sender<Result<Vec<DeadLetter>, QueueError>>,
    },
}

/// Figures the writer keeps up to date after each commit, read without a query.
#[derive(Debug, Default)]
struct Counters {
    depth: AtomicU64,
    dead_letters: AtomicU64,
    /// Reads of the database for `/health` (tests check it stays cached).
    health_reads: AtomicU64,
    /// Operators' and tests' switch: every write fails as if the disk were full.
    simulate_full_disk: AtomicBool,
    /// Tests' switch: the writer pauses this many ms after each commit, before
    /// answering (a slow fsync).
    simulate_slow_commit_ms: AtomicU64,
    /// Status changes and inbound messages queue events (`EVENTS_WEBHOOK_URL`).
    emit_events: AtomicBool,
    /// How long statuses are kept, ms (`STATUS_TTL_DAYS`).
    status_ttl_ms: AtomicU64,
    /// Every opt-out, as committed (see [`opt_outs`]): written by the writer
    /// thread after each commit, read by the gateway and the worker.
    opt_outs: std::sync::RwLock<HashMap<String, OptOut>>,
}

impl From<QueueError> for StoreError {
    fn from(error: QueueError) -> Self {
        Self(error.to_string())
    }
}

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
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
        let (id, body, api_key_id) = (
            envelope.queue_id(),
            envelope.to_json(),
            envelope.api_key_id.clone(),
        );
        self.call(|reply| Request::Enqueue {
            id,
            body,
            api_key_id,
            reply,
        })
        .await?;
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
        if may_enqueue {
            self.enqueued.notify_one();
        }
        if self.counters.emit_events.load(Ordering::Relaxed) {
            self.events_queued.notify_one();
        }
        Ok(())
    }

    /// Sends dead letter `id` back to the queue (attempts reset, a `redriven`
    /// status entry), or deletes it; only `api_key_id`'s when given. `false`
    /// when there is no such dead letter for that key.
    pub async fn settle_dead_letter(
        &self,
        kind: DeadLetterKind,
        id: &str,
        api_key_id: Option<&str>,
        redrive: bool,
    ) -> Result<bool, QueueError> {
        let found = Arc::new(AtomicBool::new(false));
        let (id, api_key_id, flag) = (id.to_owned(), api_key_id.map(str::to_owned), found.clone());
        self.call(|reply| Request::DeadLetter {
            kind,
            id,
            api_key_id,
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

    /// The opt-out of `number`, as committed (from memory: no query).
    pub fn opt_out(&self, number: &str) -> Option<OptOut> {
        self.counters
            .opt_outs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(number)
            .cloned()
    }

    /// The status record of message `id`, if `api_key_id` sent it.
    pub async fn status(
        &self,
        id: &str,
        api_key_id: &str,
    ) -> Result<Option<MessageRecord>, QueueError> {
        let (id, api_key_id) = (id.to_owned(), api_key_id.to_owned());
        self.call(|reply| Request::GetStatus {
            id,
            api_key_id,
            reply,
        })
        .await
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

    /// Records how sending an event ended.
    pub async fn settle_event(&self, id: String, outcome: EventOutcome) -> Result<(), QueueError> {
        self.call(|reply| Request::SettleEvent { id, outcome, reply })
            .await
    }

    /// Depth, oldest age and dead letters: two counters and one index lookup.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        self.counters.health_reads.fetch_add(1, Ordering::Relaxed);
        let oldest = self.call(|reply| Request::OldestCreated { reply }).await?;
        Ok(Stats {
            depth: self.counters.depth.load(Ordering::Relaxed),
            oldest_age_ms: oldest.map(|t| now_ms() - t),
            dead_letters: self.counters.dead_letters.load(Ordering::Relaxed),
        })
    }

    /// How many times [`EmbeddedQueue::stats`] has read the database.
    pub fn stats_reads(&self) -> u64 {
        self.counters.health_reads.load(Ordering::Relaxed)
    }

    /// The newest dead letters of `kind`; only `api_key_id`'s when given
    /// (`None`: all, for admins).
    pub async fn dead_letters(
        &self,
        kind: DeadLetterKind,
        limit: usize,
        api_key_id: Option<&str>,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let api_key_id = api_key_id.map(str::to_owned);
        self.call(|reply| Request::DeadLetters {
            kind,
            limit,
            api_key_id,
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

/// Applies requests until every handle is dropped. Writes that arrive together
/// share one transaction; if it fails, each is retried alone so that one bad
/// write (say, past the size cap) does not fail its neighbours.
fn writer_loop(
    mut store: Store,
    mut receiver: mpsc::UnboundedReceiver<Request>,
    counters: &Counters,
) {
    let mut batch = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let ticks = batch.len();
        batch.retain(|r| !matches!(r, Request::Expire));
        let expire = batch.len() < ticks;
        let (writes, reads): (Vec<_>, Vec<_>) = batch.drain(..).partition(|r| {
            matches!(
                r,
                Request::Enqueue { .. }
                    | Request::Settle { .. }
                    | Request::Statuses { .. }
                    | Request::OptOuts { .. }
                    | Request::DeadLetter { .. }
                    | Request::SettleEvent { .. }
            )
        });
        commit_writes(&mut store, writes, counters);
        for read in reads {
            answer_read(&mut store, read, counters);
        }
        if expire {
            expire_statuses(&mut store, counters);
        }
    }
}

/// Removes statuses older than `STATUS_TTL_DAYS` in transactions of at most
/// [`EXPIRY_BATCH`] rows per table, until none is left or the round has held
/// the writer for [`EXPIRY_BUDGET`]; a backlog clears over the next rounds.
fn expire_statuses(store: &mut Store, counters: &Counters) {
    let ttl = counters.status_ttl_ms.load(Ordering::Relaxed) as i64;
    let before = now_ms() - ttl;
    let started = Instant::now();
    loop {
        match store.transaction(|tx| statuses::expire(tx, before, EXPIRY_BATCH)) {
            Ok(full) if full && started.elapsed() < EXPIRY_BUDGET => {}
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error.message = %e, "could not remove expired statuses; will try again");
                return;
            }
        }
    }
}

/// How one committed write changes the counters.
#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    depth: i64,
    dead_letters: i64,
}

fn apply(
    tx: &rusqlite::Transaction<'_>,
    request: &Request,
    now: i64,
    emit: bool,
) -> rusqlite::Result<Delta> {
    let removed = |gone: bool| Delta {
        depth: -i64::from(gone),
        dead_letters: 0,
    };
    match request {
        Request::Enqueue {
            id,
            body,
            api_key_id,
            ..
        } => envelopes::insert(tx, id, body, api_key_id, now).map(|added| Delta {
            depth: i64::from(added),
            dead_letters: 0,
        }),
        Request::Statuses {
            updates, inbound, ..
        } => {
            let mut failovers = 0;
            for u in updates {
                failovers += i64::from(statuses::apply(tx, u, now, emit)?);
            }
            for i in inbound {
                statuses::apply_inbound(tx, i, now, emit)?;
            }
            Ok(Delta {
                depth: failovers,
                dead_letters: 0,
            })
        }
        Request::OptOuts { updates, .. } => {
            for u in updates {
                opt_outs::apply(tx, u, now, emit)?;
            }
            Ok(Delta::default())
        }
        Request::DeadLetter {
            kind: DeadLetterKind::Events,
            id,
            redrive,
            found,
            ..
        } => {
            let done = if *redrive {
                statuses::redrive_event(tx, id, now)?
            } else {
                statuses::delete_event_dead_letter(tx, id)?
            };
            found.store(done, Ordering::Relaxed);
            Ok(Delta::default())
        }
        Request::DeadLetter {
            id,
            api_key_id,
            redrive,
            found,
            ..
        } => {
            if !*redrive {
                let gone = Store::delete_dead_letter(tx, id, api_key_id.as_deref())?;
                found.store(gone, Ordering::Relaxed);
                return Ok(Delta {
                    depth: 0,
                    dead_letters: -i64::from(gone),
                });
            }
            let moved = Store::redrive(tx, id, api_key_id.as_deref(), now)?;
            found.store(moved, Ordering::Relaxed);
            if moved {
                // The row of a failover leg is `<message id>.<channel>`.
                let message_id = id.split_once('.').map_or(id.as_str(), |(m, _)| m);
                statuses::redrive(tx, message_id, now, emit)?;
            }
            Ok(Delta {
                depth: i64::from(moved),
                dead_letters: -i64::from(moved),
            })
        }
        Request::SettleEvent { id, outcome, .. } => {
            statuses::settle_event(tx, id, outcome, now).map(|()| Delta::default())
        }
        Request::Settle {
            id,
            settlement: Settlement::Delivered,
            ..
        } => Store::remove(tx, id).map(removed),
        Request::Settle {
            id,
            settlement:
                Settlement::Retry {
                    due_ms,
                    error,
                    refund,
                },
            ..
        } => Store::reschedule(tx, id, *due_ms, error, *refund).map(|()| Delta::default()),
        Request::Settle {
            id,
            settlement: Settlement::DeadLetter { reason },
            ..
        } => Store::dead_letter(tx, id, reason, now).map(|gone| Delta {
            depth: -i64::from(gone),
            dead_letters: i64::from(gone),
        }),
        _ => Ok(Delta::default()),
    }
}

/// Answers a write. An enqueue that committed after its caller stopped
/// waiting needs nothing more: its retry brings the same id, which
/// [`envelopes::insert`] does not add again.
fn reply_write(request: Request, result: Result<(), QueueError>) {
    match request {
        Request::Enqueue { reply, .. }
        | Request::Settle { reply, .. }
        | Request::Statuses { reply, .. }
        | Request::OptOuts { reply, .. }
        | Request::DeadLetter { reply, .. }
        | Request::SettleEvent { reply, .. } => {
            let _ = reply.send(result);
        }
        _ => {}
    }
}

/// The error a full disk gives, for [`EmbeddedQueue::simulate_full_disk`].
fn full_disk() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("database or disk is full (simulated)".into()),
    )
}

fn commit_writes(store: &mut Store, writes: Vec<Request>, counters: &Counters) {
    // An enqueue whose caller stopped waiting (its request timed out and was
    // answered) is not written: nothing was promised, and its retry carries
    // the same id.
    let writes: Vec<Request> = writes
        .into_iter()
        .filter(|w| !matches!(w, Request::Enqueue { reply, .. } if reply.is_closed()))
        .collect();
    if writes.is_empty() {
        return;
    }
    let now = now_ms();
    let fail = counters.simulate_full_disk.load(Ordering::Relaxed);
    let emit = counters.emit_events.load(Ordering::Relaxed);
    let run = |store: &mut Store, writes: &[Request]| {
        if fail {
            return Err(full_disk());
        }
        // Transition and opt-out counts wait for the commit.
        crate::metrics::begin_transaction();
        let result = store.transaction(|tx| {
            writes.iter().try_fold(Delta::default(), |sum, w| {
                let d = apply(tx, w, now, emit)?;
                Ok(Delta {
                    depth: sum.depth + d.depth,
                    dead_letters: sum.dead_letters + d.dead_letters,
                })
            })
        });
        crate::metrics::end_transaction(result.is_ok());
        result
    };
    let count = |d: Delta| {
        add(&counters.depth, d.depth);
        add(&counters.dead_letters, d.dead_letters);
    };
    let slow = counters.simulate_slow_commit_ms.load(Ordering::Relaxed);
    let pause = || {
        if slow > 0 {
            std::thread::sleep(Duration::from_millis(slow));
        }
    };
    if let Ok(delta) = run(store, &writes) {
        count(delta);
        refresh_opt_outs(store, &writes, counters);
        pause();
        writes.into_iter().for_each(|w| reply_write(w, Ok(())));
        return;
    }
    // The group failed and was rolled back: try each write alone.
    for w in writes {
        let result = run(store, std::slice::from_ref(&w))
            .map(count)
            .map_err(QueueError::Storage);
        if result.is_ok() {
            refresh_opt_outs(store, std::slice::from_ref(&w), counters);
        }
        pause();
        reply_write(w, result);
    }
}

/// Copies the committed opt-outs of the numbers `writes` changed into the
/// in-memory mirror, before their callers hear of the commit.
fn refresh_opt_outs(store: &Store, writes: &[Request], counters: &Counters) {
    for w in writes {
        let Request::OptOuts { updates, .. } = w else {
            continue;
        };
        for u in updates {
            match store.opt_out(&u.number) {
                Ok(found) => {
                    let mut mirror = counters
                        .opt_outs
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match found {
                        Some(o) => mirror.insert(u.number.clone(), o),
                        None => mirror.remove(&u.number),
                    };
                }
                Err(e) => {
                    tracing::error!(error.message = %e, "could not read an opt-out back after its commit")
                }
            }
        }
    }
}

fn add(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

fn answer_read(store: &mut Store, request: Request, counters: &Counters) {
    let now = now_ms();
    match request {
        Request::Lease {
            lease_ms,
            limit,
            reply,
        } => {
            let result = if counters.simulate_full_disk.load(Ordering::Relaxed) {
                Err(QueueError::Storage(full_disk()))
            } else {
                store.lease(now, lease_ms, limit).map_err(QueueError::from)
            };
            let _ = reply.send(result);
        }
        Request::OldestCreated { reply } => {
            let _ = reply.send(store.oldest_created_ms().map_err(QueueError::from));
        }
        Request::DeadLetters {
            kind,
            limit,
            api_key_id,
            reply,
        } => {
            let _ = reply.send(
                store
                    .dead_letters(kind, limit, api_key_id.as_deref())
                    .map_err(QueueError::from),
            );
        }
        Request::GetStatus {
            id,
            api_key_id,
            reply,
        } => {
            let _ = reply.send(store.status(&id, &api_key_id).map_err(QueueError::from));
        }
        Request::LeaseEvents {
            hold_ms,
            limit,
            reply,
        } => {
            let result = if counters.simulate_full_disk.load(Ordering::Relaxed) {
                Err(QueueError::Storage(full_disk()))
            } else {
                store
                    .transaction(|tx| statuses::lease_events(tx, now, hold_ms, limit))
                    .map_err(QueueError::from)
            };
            let _ = reply.send(result);
        }
        write => {
            if let Request::Enqueue { reply, .. }
            | Request::Settle { reply, .. }
            | Request::Statuses { reply, .. }
            | Request::OptOuts { reply, .. }
            | Request::DeadLetter { reply, .. }
            | Request::SettleEvent { reply, .. } = write
            {
                let _ = reply.send(Err(QueueError::Closed));
            }
        }
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
        api_key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        Box::pin(async move { Ok(self.status(id, api_key_id).await?) })
    }

    fn opt_out<'a>(&'a self, number: &'a str) -> BoxFuture<'a, Result<Option<OptOut>, StoreError>> {
        Box::pin(async move { Ok(EmbeddedQueue::opt_out(self, number)) })
    }

    fn change_opt_outs(&self, updates: Vec<OptOutUpdate>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { Ok(EmbeddedQueue::change_opt_outs(self, updates).await?) })
    }
}
