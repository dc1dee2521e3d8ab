//! The embedded default's event outbox: events written in the same
//! transaction as the status (or opt-out) that caused them, taken by the event
//! sender (`event_sender.rs`) and settled: sent, retried later, or moved
//! to `event_dead_letters`, from where an operator redrives or deletes them.

use rusqlite::{Transaction, params};

use crate::status::events::Event;

/// Queues `event` (once: a repeated id is ignored), due `now`.
pub fn queue_event(tx: &Transaction<'_>, event: &Event, now: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO events (id, body, due_at) VALUES (?1, ?2, ?3)")?
        .execute(params![event.id, event.body, now])?;
    Ok(())
}

/// One event taken from the outbox for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The event id.
    pub id: String,
    /// The event JSON.
    pub body: String,
    /// Attempts including this one.
    pub attempts: u32,
}

/// Takes up to `limit` due events, holding each for `hold_ms` (the sender owns
/// it meanwhile; after a crash it comes due again then).
pub fn lease_events(
    tx: &Transaction<'_>,
    now: i64,
    hold_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxEvent>> {
    tx.prepare_cached(
        "UPDATE events SET due_at = ?1 + ?2, attempts = attempts + 1
         WHERE id IN (SELECT id FROM events WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?3)
         RETURNING id, body, attempts",
    )?
    .query_map(params![now, hold_ms, limit as i64], |r| {
        Ok(OutboxEvent {
            id: r.get(0)?,
            body: r.get(1)?,
            attempts: r.get(2)?,
        })
    })?
    .collect()
}

/// How one event's sending ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Try again at `due_ms`.
    Retry {
        /// When, Unix ms.
        due_ms: i64,
        /// Why it failed.
        error: String,
    },
    /// Attempts spent: keep it aside.
    DeadLetter {
        /// Why.
        reason: String,
    },
}

/// Records how an event's sending ended.
pub fn settle_event(
    tx: &Transaction<'_>,
    id: &str,
    outcome: &EventOutcome,
    now: i64,
) -> rusqlite::Result<()> {
    match outcome {
        EventOutcome::Delivered => {
            tx.prepare_cached("DELETE FROM events WHERE id = ?1")?
                .execute([id])?;
        }
        EventOutcome::Retry { due_ms, error } => {
            tx.prepare_cached("UPDATE events SET due_at = ?2, last_error = ?3 WHERE id = ?1")?
                .execute(params![id, due_ms, error])?;
        }
        EventOutcome::DeadLetter { reason } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO event_dead_letters (id, body, attempts, reason, failed_at)
                 SELECT id, body, attempts, ?2, ?3 FROM events WHERE id = ?1",
            )?
            .execute(params![id, reason, now])?;
            tx.prepare_cached("DELETE FROM events WHERE id = ?1")?
                .execute([id])?;
        }
    }
    Ok(())
}

/// Sends event dead letter `id` back to the outbox, due now with its attempts
/// reset; `true` when it existed.
pub fn redrive_event(tx: &Transaction<'_>, id: &str, now: i64) -> rusqlite::Result<bool> {
    let moved = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (id, body, attempts, due_at)
             SELECT id, body, 0, ?2 FROM event_dead_letters WHERE id = ?1",
        )?
        .execute(params![id, now])?;
    if moved == 0 {
        return Ok(false);
    }
    tx.prepare_cached("DELETE FROM event_dead_letters WHERE id = ?1")?
        .execute([id])?;
    Ok(true)
}

/// Forgets event dead letter `id`; `true` when it existed.
pub fn delete_event_dead_letter(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("DELETE FROM event_dead_letters WHERE id = ?1")?
        .execute([id])?
        == 1)
}
