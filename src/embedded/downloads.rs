//! Inbound media waiting to be kept: the durable job (one row per inbound
//! message with media) that the webhook's transaction writes instead of the
//! message's event. The downloader (`downloader.rs`) leases jobs,
//! downloads and keeps the media, and settles them here: the row goes and
//! the `message.inbound` event, now carrying `media`, is queued in the same
//! transaction. A failed download is retried with the delivery backoff; past
//! `DELIVERY_MAX_ATTEMPTS` the event goes with `media.error`.

use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::Value;

use super::outbox;
use crate::status::{Inbound, events};

/// Creates the table (idempotent).
pub fn create_table(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS media_downloads (
             provider_id TEXT PRIMARY KEY,
             inbound TEXT NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             due_at INTEGER NOT NULL,
             last_error TEXT
         );
         CREATE INDEX IF NOT EXISTS media_downloads_due ON media_downloads (due_at);",
    )
}

/// A download taken for work.
#[derive(Debug, Clone)]
pub struct Job {
    /// The inbound message, as the webhook recorded it.
    pub inbound: Inbound,
    /// Attempts including this one.
    pub attempts: u32,
}

/// How a download ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Kept: the event's `media`.
    Kept(Value),
    /// Try again at `due_ms`.
    Retry { due_ms: i64, error: String },
    /// Given up: the event goes with `media.error`.
    GaveUp { error: String },
}

/// Queues the download of `inbound`'s media.
pub fn queue(tx: &Transaction<'_>, inbound: &Inbound, now: i64) -> rusqlite::Result<()> {
    let json = serde_json::to_string(inbound).expect("an inbound message serialises");
    tx.prepare_cached(
        "INSERT OR IGNORE INTO media_downloads (provider_id, inbound, due_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![inbound.provider_message_id, json, now])?;
    Ok(())
}

/// Up to `limit` due downloads, held for `hold_ms` (an attempt counted).
pub fn lease(
    tx: &Transaction<'_>,
    now: i64,
    hold_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Job>> {
    let rows: Vec<(String, String, u32)> = tx
        .prepare_cached(
            "UPDATE media_downloads SET due_at = ?1 + ?2, attempts = attempts + 1
             WHERE provider_id IN (SELECT provider_id FROM media_downloads WHERE due_at <= ?1
                                   ORDER BY due_at LIMIT ?3)
             RETURNING provider_id, inbound, attempts",
        )?
        .query_map(params![now, hold_ms, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(_, json, attempts)| {
            serde_json::from_str(&json)
                .ok()
                .map(|inbound| Job { inbound, attempts })
        })
        .collect())
}

/// Settles the download of `provider_id`; queues its event (when `emit`)
/// once it is done either way.
pub fn settle(
    tx: &Transaction<'_>,
    provider_id: &str,
    outcome: &Outcome,
    now: i64,
    emit: bool,
) -> rusqlite::Result<()> {
    let media = match outcome {
        Outcome::Retry { due_ms, error } => {
            tx.prepare_cached(
                "UPDATE media_downloads SET due_at = ?2, last_error = ?3 WHERE provider_id = ?1",
            )?
            .execute(params![provider_id, due_ms, error])?;
            return Ok(());
        }
        Outcome::Kept(media) => media.clone(),
        Outcome::GaveUp { error } => serde_json::json!({"error": error}),
    };
    let inbound: Option<String> = tx
        .prepare_cached("DELETE FROM media_downloads WHERE provider_id = ?1 RETURNING inbound")?
        .query_row([provider_id], |r| r.get(0))
        .optional()?;
    let inbound = inbound.and_then(|j| serde_json::from_str::<Inbound>(&j).ok());
    if let (Some(inbound), true) = (inbound, emit) {
        outbox::queue_event(tx, &events::inbound_event_with(&inbound, Some(media)), now)?;
    }
    Ok(())
}
