//! The embedded default's status store and event outbox: tables in the queue's
//! own database, written by its writer thread in the same group commits as
//! the queue (a status and the event it causes commit together, so a crash
//! loses neither and sends no event for a status that was not recorded).
//! `accepted` is not written at enqueue: until the consumer's first write a
//! message's record is read from its queued envelope, so the 202's commit
//! carries only the envelope and its search row ([`super::search`]).
//!
//! - `statuses`: one row per message, its [`MessageRecord`] as JSON.
//! - `provider_ids`: provider message id → message id, and the reports that
//!   came for a provider id before the consumer recorded it (`pending`).
//! - `inbound_seen`: provider ids of inbound messages already turned into events.
//! - `events` / `event_dead_letters`: the outbox the event sender drains.
//!
//! Rows expire after `STATUS_TTL_DAYS`: [`expire`] removes them in small
//! batches, on the writer's expiry timer.

use rusqlite::{OptionalExtension, Transaction, params};

use super::outbox;

use crate::contract::Envelope;
use crate::status::events;
use crate::status::{
    Entry, History, Inbound, MessageInfo, MessageRecord, Status, Update, apply, model,
};
use crate::tenants::Scope;

/// Creates the tables (idempotent).
pub fn create_tables(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS statuses (
             id TEXT PRIMARY KEY,
             api_key_id TEXT NOT NULL,
             record TEXT NOT NULL,
             updated_at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS statuses_updated ON statuses (updated_at);
         CREATE TABLE IF NOT EXISTS provider_ids (
             provider_id TEXT PRIMARY KEY,
             message_id TEXT,
             pending TEXT,
             updated_at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS provider_ids_updated ON provider_ids (updated_at);
         CREATE TABLE IF NOT EXISTS inbound_seen (
             provider_id TEXT PRIMARY KEY,
             seen_at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS inbound_seen_at ON inbound_seen (seen_at);
         CREATE TABLE IF NOT EXISTS events (
             id TEXT PRIMARY KEY,
             body TEXT NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             due_at INTEGER NOT NULL,
             last_error TEXT
         );
         CREATE INDEX IF NOT EXISTS events_due ON events (due_at);
         CREATE TABLE IF NOT EXISTS event_dead_letters (
             id TEXT PRIMARY KEY,
             body TEXT NOT NULL,
             attempts INTEGER NOT NULL,
             reason TEXT NOT NULL,
             failed_at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS event_dead_letters_failed ON event_dead_letters (failed_at);",
    )
}

pub(super) fn load(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<Option<MessageRecord>> {
    let json: Option<String> = tx
        .prepare_cached("SELECT record FROM statuses WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

fn save(tx: &Transaction<'_>, record: &MessageRecord) -> rusqlite::Result<()> {
    let json = serde_json::to_string(record).expect("a record serialises");
    tx.prepare_cached(
        "INSERT INTO statuses (id, api_key_id, record, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET api_key_id = ?2, record = ?3, updated_at = ?4",
    )?
    .execute(params![
        record.id,
        record.api_key_id,
        json,
        record.updated_at_ms
    ])?;
    super::search::sync(tx, record, record.updated_at_ms)
}

/// Merges `incoming` into `record` ([`apply::merge`]) and persists what
/// follows in the caller's transaction: the events, the transitions' metric,
/// and the failover leg, whose queue id is its own ([`Envelope::queue_id`])
/// so it never collides with the first leg's envelope, which may still be in
/// the queue. `Ok(true)` when it queued a failover leg.
pub(super) fn merge_and_save(
    tx: &Transaction<'_>,
    mut record: MessageRecord,
    incoming: History,
    fails_over: bool,
    now: i64,
    emit: bool,
) -> rusqlite::Result<bool> {
    let effects = apply::merge(&mut record, incoming, fails_over, now, emit);
    for event in &effects.events {
        outbox::queue_event(tx, event, now)?;
    }
    for (channel, status) in &effects.transitions {
        crate::metrics::status_transition(channel, status.as_str());
    }
    let queued = match &effects.failover {
        Some(leg) => super::envelopes::insert(tx, &super::envelopes::Row::of(leg), now)?,
        None => false,
    };
    save(tx, &record)?;
    Ok(queued)
}

/// Applies one update; `emit` queues events (an events webhook is configured).
/// `Ok(true)` when it queued a failover envelope (a report that fails over a
/// message with a fallback: the envelope goes into the queue in the same
/// transaction, so the report is acknowledged only once its SMS is queued).
pub fn apply(
    tx: &Transaction<'_>,
    update: &Update,
    now: i64,
    emit: bool,
) -> rusqlite::Result<bool> {
    match update {
        Update::Message {
            info,
            status,
            entry,
            provider_message_id,
        } => {
            let mut record = load(tx, &info.id)?.unwrap_or_else(|| MessageRecord::new(&info.id));
            record.fill(info);
            let mut incoming = History::from([(*status, entry.clone())]);
            let mut early_fails_over = false;
            if let Some(pid) = provider_message_id {
                record.provider_message_id = Some(pid.clone());
                for (s, e) in take_early_reports(tx, pid, &info.id, now)? {
                    early_fails_over |= e.fails_over();
                    incoming.entry(s).or_insert(e);
                }
            }
            // A cannot-reach report that came before the send was recorded
            // fails over; the consumer's own failure fails over in the pipeline.
            merge_and_save(tx, record, incoming, early_fails_over, now, emit)
        }
        Update::Provider {
            provider_message_id,
            status,
            entry,
        } => apply_report(tx, provider_message_id, *status, entry, now, emit),
    }
}

/// Correlates provider id `pid` with message `message_id` and takes the
/// reports that came for it before this send was recorded.
fn take_early_reports(
    tx: &Transaction<'_>,
    pid: &str,
    message_id: &str,
    now: i64,
) -> rusqlite::Result<History> {
    let pending: Option<String> = tx
        .prepare_cached("SELECT pending FROM provider_ids WHERE provider_id = ?1")?
        .query_row([pid], |r| r.get(0))
        .optional()?
        .flatten();
    tx.prepare_cached(
        "INSERT INTO provider_ids (provider_id, message_id, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (provider_id) DO UPDATE SET message_id = ?2, pending = NULL, updated_at = ?3",
    )?
    .execute(params![pid, message_id, now])?;
    Ok(pending
        .and_then(|p| serde_json::from_str::<History>(&p).ok())
        .unwrap_or_default())
}

/// Applies a provider's report: to its message when the send is recorded,
/// else kept with the provider id until it is.
fn apply_report(
    tx: &Transaction<'_>,
    provider_message_id: &str,
    status: Status,
    entry: &Entry,
    now: i64,
    emit: bool,
) -> rusqlite::Result<bool> {
    let row: Option<(Option<String>, Option<String>)> = tx
        .prepare_cached("SELECT message_id, pending FROM provider_ids WHERE provider_id = ?1")?
        .query_row([provider_message_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((Some(message_id), _)) = &row
        && let Some(record) = load(tx, message_id)?
    {
        if record.has(status, entry) {
            // A repeated report (Meta retries): nothing to write.
            return Ok(false);
        }
        let incoming = History::from([(status, entry.clone())]);
        return merge_and_save(tx, record, incoming, entry.fails_over(), now, emit);
    }
    let mut pending: History = row
        .and_then(|(_, p)| p)
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or_default();
    model::merge(&mut pending, status, entry.clone());
    tx.prepare_cached(
        "INSERT INTO provider_ids (provider_id, pending, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (provider_id) DO UPDATE SET pending = ?2, updated_at = ?3",
    )?
    .execute(params![
        provider_message_id,
        serde_json::to_string(&pending).expect("a history serialises"),
        now
    ])?;
    Ok(false)
}

/// Records an operator's redrive of message `id` (see
/// [`MessageRecord::redrive`]), with its event when `emit`.
pub fn redrive(tx: &Transaction<'_>, id: &str, now: i64, emit: bool) -> rusqlite::Result<()> {
    let Some(mut record) = load(tx, id)? else {
        // Never recorded (dead-lettered before any status write): nothing to move on.
        return Ok(());
    };
    let change = record.redrive(now);
    if let Some(to) = change.changed_to() {
        crate::metrics::status_transition(record.latest_channel(), to.as_str());
        if emit && let Some(event) = events::status_event(&record, to, now) {
            outbox::queue_event(tx, &event, now)?;
        }
    }
    save(tx, &record)
}

/// Records one inbound message; queues its event the first time its provider
/// id is seen, when `emit`.
pub fn apply_inbound(
    tx: &Transaction<'_>,
    inbound: &Inbound,
    now: i64,
    emit: bool,
) -> rusqlite::Result<()> {
    if let Some((number_id, person)) = inbound.window_key() {
        super::windows::note_inbound(tx, number_id, person, inbound.at_ms, now)?;
    }
    let (number_id, tenants) = match inbound.window_key() {
        Some((number_id, _)) => (
            Some(number_id),
            Some(serde_json::to_string(&inbound.tenants).expect("strings serialise")),
        ),
        None => (None, None),
    };
    let first =
        tx.prepare_cached(
            "INSERT OR IGNORE INTO inbound_seen (provider_id, seen_at, number_id, tenants)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            inbound.provider_message_id,
            now,
            number_id,
            tenants
        ])? == 1;
    if first && inbound.media_id().is_some() {
        // Its event waits for its media (see `downloads`).
        super::downloads::queue(tx, inbound, now)?;
    } else if first && emit {
        outbox::queue_event(tx, &events::inbound_event(inbound), now)?;
    }
    Ok(())
}

/// The record of message `id`, if it is in `scope`.
pub fn get(
    conn: &rusqlite::Connection,
    id: &str,
    scope: &Scope,
) -> rusqlite::Result<Option<MessageRecord>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT record FROM statuses WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(record) = json.and_then(|j| serde_json::from_str::<MessageRecord>(&j).ok()) {
        return Ok(scope
            .covers(&record.api_key_id, &record.tenant)
            .then_some(record));
    }
    // Accepted and not yet attempted: the queued envelope is the record (the
    // enqueue writes no status row, so the 202's commit carries nothing more).
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM envelopes WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(body
        .and_then(|b| Envelope::from_json(&b).ok())
        .filter(|e| scope.covers(&e.api_key_id, &e.tenant))
        .map(|e| MessageRecord::accepted(&MessageInfo::of(&e))))
}

/// Removes what is older than `before_ms`, at most `limit` rows per table (so
/// expiry never holds a long transaction); true when some table had `limit`
/// rows to remove (more may be left).
pub fn expire(tx: &Transaction<'_>, before_ms: i64, limit: usize) -> rusqlite::Result<bool> {
    let mut full = false;
    for (table, column, key) in [
        ("statuses", "updated_at", "id"),
        ("provider_ids", "updated_at", "provider_id"),
        ("inbound_seen", "seen_at", "provider_id"),
        ("event_dead_letters", "failed_at", "id"),
        ("windows", "updated_at", "rowid"),
        ("message_index", "updated_at", "id"),
        ("message_counts", "minute", "rowid"),
    ] {
        let removed = tx.execute(
            &format!(
                "DELETE FROM {table} WHERE {key} IN
                 (SELECT {key} FROM {table} WHERE {column} < ?1 ORDER BY {column} LIMIT ?2)"
            ),
            params![before_ms, limit as i64],
        )?;
        full |= removed >= limit;
    }
    Ok(full)
}
