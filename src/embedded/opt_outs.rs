//! The embedded default's opt-outs: one row per number in the queue's
//! database, changed by the writer thread (the `recipient.opt-out` event goes
//! into the outbox in the same transaction), and mirrored in memory so the
//! gateway's check at the edge and the worker's before each delivery cost no
//! query. The mirror is refreshed from the rows after each commit, by the
//! writer thread, so it is exactly what was committed.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::events;
use crate::optout::{self, OptOut, OptOutUpdate};
use crate::status::format_ms;

/// Creates the table (idempotent).
pub fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS opt_outs (
             number TEXT PRIMARY KEY,
             channels TEXT NOT NULL,
             source TEXT NOT NULL,
             updated_at INTEGER NOT NULL
         );",
    )
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OptOut> {
    let channels: String = r.get(1)?;
    Ok(OptOut {
        number: r.get(0)?,
        channels: serde_json::from_str(&channels).unwrap_or_default(),
        source: r.get(2)?,
        updated_at: format_ms(r.get(3)?),
    })
}

/// The opt-out of `number`, if any.
pub fn get(conn: &Connection, number: &str) -> rusqlite::Result<Option<OptOut>> {
    conn.prepare_cached(
        "SELECT number, channels, source, updated_at FROM opt_outs WHERE number = ?1",
    )?
    .query_row([number], from_row)
    .optional()
}

/// Every opt-out, to fill the mirror at start.
pub fn load_all(conn: &Connection) -> rusqlite::Result<HashMap<String, OptOut>> {
    conn.prepare("SELECT number, channels, source, updated_at FROM opt_outs")?
        .query_map([], from_row)?
        .map(|o| o.map(|o| (o.number.clone(), o)))
        .collect()
}

/// Applies one change, queueing its event when `emit` and it changed anything.
pub fn apply(
    tx: &Transaction<'_>,
    update: &OptOutUpdate,
    now: i64,
    emit: bool,
) -> rusqlite::Result<()> {
    let current: BTreeSet<String> = get(tx, &update.number)?
        .map(|o| o.channels)
        .unwrap_or_default();
    let next = optout::apply(&current, &update.change);
    if next == current {
        return Ok(());
    }
    if next.is_empty() {
        tx.prepare_cached("DELETE FROM opt_outs WHERE number = ?1")?
            .execute([&update.number])?;
    } else {
        tx.prepare_cached(
            "INSERT INTO opt_outs (number, channels, source, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (number) DO UPDATE SET channels = ?2, source = ?3, updated_at = ?4",
        )?
        .execute(params![
            update.number,
            serde_json::to_string(&next).expect("a set of strings serialises"),
            update.source,
            now
        ])?;
    }
    crate::metrics::opt_out_change(&update.source);
    if emit {
        let event =
            events::opt_out_event(&update.number, &next, &update.change, &update.source, now);
        tx.prepare_cached("INSERT OR IGNORE INTO events (id, body, due_at) VALUES (?1, ?2, ?3)")?
            .execute(params![event.id, event.body, now])?;
    }
    Ok(())
}
