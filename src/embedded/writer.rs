//! The writer thread: the one owner of the SQLite connection. It applies
//! requests in batches (every write that arrives while a commit runs joins
//! the next transaction: group commit, one fsync per batch), answers reads,
//! keeps the counters, and expires old statuses on its timer.

use crate::tenants::Scope;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub(super) use super::counters::{Counters, MAX_CACHED_WINDOWS};
use super::envelopes::{self, Settlement};
use super::error::QueueError;
use super::opt_outs;
use super::outbox;
pub(crate) use super::requests::Request;
use super::statuses;
use super::store::{DeadLetterKind, Store};
use crate::clock::now_ms;

/// Most requests committed in one transaction.
pub(super) const MAX_GROUP: usize = 1024;
/// How often expired statuses are removed (a timer asks the writer, so
/// expiry runs whether or not requests arrive), at most how many rows per
/// table one transaction removes, and how long one round may hold the
/// writer: up to a fifth of its time, which removes tens of thousands of rows
/// a second, far more than delivery writes (`bench status_expiry`).
pub(super) const EXPIRY_EVERY: Duration = Duration::from_secs(1);
const EXPIRY_BATCH: usize = 2_000;
const EXPIRY_BUDGET: Duration = Duration::from_millis(200);

/// Applies requests until every handle is dropped. Writes that arrive together
/// share one transaction; if it fails, each is retried alone so that one bad
/// write (say, past the size cap) does not fail its neighbours.
pub(super) fn writer_loop(
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
                    | Request::CloseWindows { .. }
                    | Request::Templates { .. }
                    | Request::DeadLetter { .. }
                    | Request::Cancel { .. }
                    | Request::SettleDownload { .. }
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
    // Rows may go: the next reads see what is left.
    counters.windows().clear();
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
    match request {
        Request::Enqueue { row, .. } => envelopes::insert(tx, row, now).map(|added| Delta {
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
        Request::CloseWindows { closures, .. } => {
            for c in closures {
                super::windows::close(tx, c, now)?;
            }
            Ok(Delta::default())
        }
        Request::Templates { write, .. } => {
            super::templates::apply(tx, write).map(|()| Delta::default())
        }
        Request::DeadLetter {
            kind,
            id,
            scope,
            redrive,
            found,
            ..
        } => settle_dead_letter(tx, *kind, id, scope, *redrive, found, now, emit),
        Request::SettleEvent { id, outcome, .. } => {
            outbox::settle_event(tx, id, outcome, now).map(|()| Delta::default())
        }
        Request::SettleDownload {
            provider_id,
            outcome,
            ..
        } => {
            super::downloads::settle(tx, provider_id, outcome, now, emit).map(|()| Delta::default())
        }
        Request::Settle { id, settlement, .. } => settle(tx, id, settlement, now),
        Request::Cancel {
            ids,
            scope,
            batch,
            outcome,
            ..
        } => super::cancel::apply(tx, (ids, scope, batch.as_deref()), outcome, now, emit).map(
            |removed| Delta {
                depth: -removed,
                dead_letters: 0,
            },
        ),
        _ => Ok(Delta::default()),
    }
}

/// How a delivery's outcome changes the queue.
fn settle(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    settlement: &Settlement,
    now: i64,
) -> rusqlite::Result<Delta> {
    match settlement {
        Settlement::Delivered => Store::remove(tx, id).map(|gone| Delta {
            depth: -i64::from(gone),
            dead_letters: 0,
        }),
        Settlement::Retry {
            due_ms,
            error,
            refund,
        } => Store::reschedule(tx, id, *due_ms, error, *refund).map(|()| Delta::default()),
        Settlement::DeadLetter { reason } => {
            Store::dead_letter(tx, id, reason, now).map(|gone| Delta {
                depth: -i64::from(gone),
                dead_letters: i64::from(gone),
            })
        }
    }
}

/// An operator's redrive (`redrive`) or delete of a dead letter of `kind`;
/// `found` says whether it existed for that key.
#[allow(clippy::too_many_arguments)]
fn settle_dead_letter(
    tx: &rusqlite::Transaction<'_>,
    kind: DeadLetterKind,
    id: &str,
    scope: &Scope,
    redrive: bool,
    found: &AtomicBool,
    now: i64,
    emit: bool,
) -> rusqlite::Result<Delta> {
    let (done, delta) = match (kind, redrive) {
        (DeadLetterKind::Events, true) => (outbox::redrive_event(tx, id, now)?, Delta::default()),
        (DeadLetterKind::Events, false) => {
            (outbox::delete_event_dead_letter(tx, id)?, Delta::default())
        }
        (DeadLetterKind::Messages, false) => {
            let gone = Store::delete_dead_letter(tx, id, scope)?;
            let delta = Delta {
                depth: 0,
                dead_letters: -i64::from(gone),
            };
            (gone, delta)
        }
        (DeadLetterKind::Messages, true) => {
            let moved = Store::redrive(tx, id, scope, now)?;
            if moved {
                // The row of a failover leg is `<message id>.<channel>`.
                let message_id = id.split_once('.').map_or(id, |(m, _)| m);
                statuses::redrive(tx, message_id, now, emit)?;
            }
            let delta = Delta {
                depth: i64::from(moved),
                dead_letters: -i64::from(moved),
            };
            (moved, delta)
        }
    };
    found.store(done, Ordering::Relaxed);
    Ok(delta)
}

/// Answers a write. An enqueue that committed after its caller stopped
/// waiting needs nothing more: its retry brings the same id, which
/// [`envelopes::insert`] does not add again.
fn reply_write(request: Request, result: Result<(), QueueError>) {
    if let Some(reply) = write_reply(request) {
        let _ = reply.send(result);
    }
}

/// A write's reply; `None` for a read.
fn write_reply(request: Request) -> Option<oneshot::Sender<Result<(), QueueError>>> {
    match request {
        Request::Enqueue { reply, .. }
        | Request::Settle { reply, .. }
        | Request::Statuses { reply, .. }
        | Request::OptOuts { reply, .. }
        | Request::DeadLetter { reply, .. }
        | Request::Cancel { reply, .. }
        | Request::SettleDownload { reply, .. }
        | Request::CloseWindows { reply, .. }
        | Request::Templates { reply, .. }
        | Request::SettleEvent { reply, .. } => Some(reply),
        _ => None,
    }
}

/// What `lease` leased, or the simulated full disk's error (a lease writes).
fn lease_unless_full<T>(
    counters: &Counters,
    lease: impl FnOnce() -> rusqlite::Result<T>,
) -> Result<T, QueueError> {
    if counters.simulate_full_disk.load(Ordering::Relaxed) {
        Err(QueueError::Storage(full_disk()))
    } else {
        lease().map_err(QueueError::from)
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
        forget_windows(&writes, counters);
        note_tenants(store, &writes);
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
            forget_windows(std::slice::from_ref(&w), counters);
            note_tenants(store, std::slice::from_ref(&w));
        }
        pause();
        reply_write(w, result);
    }
}

/// Drops the windows the committed `writes` changed from the cache.
fn forget_windows(writes: &[Request], counters: &Counters) {
    let mut cached = counters.windows();
    for w in writes {
        match w {
            Request::CloseWindows { closures, .. } => {
                for c in closures {
                    cached.remove(&(c.number_id.clone(), c.person.clone()));
                }
            }
            Request::Statuses { inbound, .. } => {
                for (number_id, person) in inbound.iter().filter_map(|i| i.window_key()) {
                    cached.remove(&(number_id.to_owned(), person.to_owned()));
                }
            }
            _ => {}
        }
    }
}

/// Tells the lease which tenants the committed enqueues belong to, so a
/// tenant's first envelope is shared at once.
fn note_tenants(store: &mut Store, writes: &[Request]) {
    for w in writes {
        if let Request::Enqueue { row, .. } = w {
            store.fair.note(&row.tenant);
        }
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
            match store.opt_out(&u.tenant, &u.number) {
                Ok(found) => {
                    let mut mirror = counters
                        .opt_outs
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match found {
                        Some(o) => mirror.insert(u.key(), o),
                        None => mirror.remove(&u.key()),
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
            let _ = reply.send(lease_unless_full(counters, || {
                store.lease(now, lease_ms, limit)
            }));
        }
        Request::Shares(shares) => store.fair.set_shares(shares),
        Request::GetReceived { provider_id, reply } => {
            let _ = reply.send(store.received(&provider_id).map_err(QueueError::from));
        }
        Request::GetTemplates { waba_id, reply } => {
            let _ = reply.send(store.templates(&waba_id).map_err(QueueError::from));
        }
        Request::GetWindow {
            number_id,
            person,
            reply,
        } => {
            let read = store.window(&number_id, &person);
            if let Ok(window) = &read {
                let mut cached = counters.windows();
                if cached.len() >= MAX_CACHED_WINDOWS {
                    cached.clear();
                }
                cached.insert((number_id, person), *window);
            }
            let _ = reply.send(read.map_err(QueueError::from));
        }
        Request::OldestCreated { reply } => {
            let _ = reply.send(store.line(now).map_err(QueueError::from));
        }
        Request::DeadLetters {
            kind,
            limit,
            scope,
            reply,
        } => {
            let _ = reply.send(
                store
                    .dead_letters(kind, limit, &scope)
                    .map_err(QueueError::from),
            );
        }
        Request::Search { search, reply } => {
            let _ = reply.send(store.search(&search).map_err(QueueError::from));
        }
        Request::Counts { query, reply } => {
            let _ = reply.send(store.message_counts(&query).map_err(QueueError::from));
        }
        Request::GetStatus { id, scope, reply } => {
            let _ = reply.send(store.status(&id, &scope).map_err(QueueError::from));
        }
        Request::LeaseDownloads {
            hold_ms,
            limit,
            reply,
        } => {
            let _ = reply.send(lease_unless_full(counters, || {
                store.transaction(|tx| super::downloads::lease(tx, now, hold_ms, limit))
            }));
        }
        Request::LeaseEvents {
            hold_ms,
            limit,
            reply,
        } => {
            let _ = reply.send(lease_unless_full(counters, || {
                store.transaction(|tx| outbox::lease_events(tx, now, hold_ms, limit))
            }));
        }
        write => reply_write(write, Err(QueueError::Closed)),
    }
}
