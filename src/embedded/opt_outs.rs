//! The embedded default's opt-outs: one row per tenant and number in the queue's
//! database, changed by the writer thread (the `recipient.opt-out` event goes
//! into the outbox in the same transaction), and mirrored in memory so the
//! gateway's check at the edge and the worker's before each delivery cost no
//! query. The mirror is refreshed from the rows after each commit, by the
//! writer thread, so it is exactly what was committed.
//!
//! A number whose last channel is removed keeps its row (channels `[]`), with
//! the [`Ordering`] that keeps later changes in the person's order.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::optout::{self, OptOut, OptOutUpdate, Ordering};
use crate::status::events;
use crate::status::format_ms;

/// Creates the table (idempotent), migrating databases made before
/// changes were ordered (no `ordering`) and before tenants (one row per
/// number: those opt-outs belong to `default`).
pub fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS opt_outs {COLUMNS};"))?;
    let has = |column: &str| super::schema::has_column(conn, "opt_outs", column);
    if !has("ordering")? {
        conn.execute("ALTER TABLE opt_outs ADD COLUMN ordering TEXT", [])?;
    }
    if !has("tenant")? {
        // The key changes: SQLite rebuilds the table for that.
        conn.execute_batch(&format!(
            "BEGIN;
             ALTER TABLE opt_outs RENAME TO opt_outs_before_tenants;
             CREATE TABLE opt_outs {COLUMNS};
             INSERT INTO opt_outs (tenant, number, channels, source, updated_at, ordering)
                 SELECT 'default', number, channels, source, updated_at, ordering
                 FROM opt_outs_before_tenants;
             DROP TABLE opt_outs_before_tenants;
             COMMIT;"
        ))?;
    }
    Ok(())
}

/// The table's columns and key.
const COLUMNS: &str = "(
    tenant TEXT NOT NULL DEFAULT 'default',
    number TEXT NOT NULL,
    channels TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    ordering TEXT,
    PRIMARY KEY (tenant, number)
)";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OptOut> {
    let channels: String = r.get(2)?;
    Ok(OptOut {
        tenant: r.get(0)?,
        number: r.get(1)?,
        channels: serde_json::from_str(&channels).unwrap_or_default(),
        source: r.get(3)?,
        updated_at: format_ms(r.get(4)?),
    })
}

/// `tenant`'s opt-out of `number`, if it has a channel.
pub fn get(conn: &Connection, tenant: &str, number: &str) -> rusqlite::Result<Option<OptOut>> {
    conn.prepare_cached(
        "SELECT tenant, number, channels, source, updated_at FROM opt_outs
         WHERE tenant = ?1 AND number = ?2 AND channels != '[]'",
    )?
    .query_row([tenant, number], from_row)
    .optional()
}

/// Every opt-out with a channel, by [`optout::consent_key`], to fill the
/// mirror at start.
pub fn load_all(conn: &Connection) -> rusqlite::Result<HashMap<String, OptOut>> {
    conn.prepare(
        "SELECT tenant, number, channels, source, updated_at FROM opt_outs WHERE channels != '[]'",
    )?
    .query_map([], from_row)?
    .map(|o| o.map(|o| (optout::consent_key(&o.tenant, &o.number), o)))
    .collect()
}

/// A tenant's record of a number: channels and ordering, with or without
/// channels.
fn read_record(
    conn: &Connection,
    tenant: &str,
    number: &str,
) -> rusqlite::Result<(BTreeSet<String>, Ordering)> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached(
            "SELECT channels, ordering FROM opt_outs WHERE tenant = ?1 AND number = ?2",
        )?
        .query_row([tenant, number], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map_or_else(Default::default, |(channels, ordering)| {
        (
            serde_json::from_str(&channels).unwrap_or_default(),
            Ordering::parse(ordering.as_deref()),
        )
    }))
}

/// Applies one change in the person's order (see [`optout::apply_in_order`]),
/// queueing its event when `emit` and it changed the channels.
pub fn apply(
    tx: &Transaction<'_>,
    update: &OptOutUpdate,
    now: i64,
    emit: bool,
) -> rusqlite::Result<()> {
    let (current, ordering) = read_record(tx, &update.tenant, &update.number)?;
    let Some(applied) = optout::apply_in_order(&current, &ordering, update) else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO opt_outs (number, channels, source, updated_at, ordering, tenant)
         VALUES (?1, ?2, ?3, ?4, ?5, ?7)
         ON CONFLICT (tenant, number) DO UPDATE SET channels = ?2, ordering = ?5,
             source = CASE WHEN ?6 THEN ?3 ELSE source END,
             updated_at = CASE WHEN ?6 THEN ?4 ELSE updated_at END",
    )?
    .execute(params![
        update.number,
        serde_json::to_string(&applied.channels).expect("a set of strings serialises"),
        update.source,
        now,
        applied.ordering.to_json(),
        applied.changed,
        update.tenant,
    ])?;
    if !applied.changed {
        return Ok(());
    }
    crate::metrics::opt_out_change(&update.source);
    if emit {
        let event = events::opt_out_event(update, &applied.channels, now);
        super::outbox::queue_event(tx, &event, now)?;
    }
    Ok(())
}
