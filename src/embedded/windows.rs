//! The embedded default's customer-service windows: one row per (sending
//! number, person), the person's latest message time and the latest 131047,
//! each only ever moving forward (webhooks arrive in any order).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::window::{Closure, Received, Window};

/// Creates the table (idempotent).
pub fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS windows (
             number_id TEXT NOT NULL,
             person TEXT NOT NULL,
             last_inbound_at INTEGER,
             closed_at INTEGER,
             updated_at INTEGER NOT NULL,
             PRIMARY KEY (number_id, person)
         );
         CREATE INDEX IF NOT EXISTS windows_updated ON windows (updated_at);",
    )
}

/// Notes the person's message at `at_ms` to `number_id`.
pub fn note_inbound(
    tx: &Transaction<'_>,
    number_id: &str,
    person: &str,
    at_ms: i64,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO windows (number_id, person, last_inbound_at, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (number_id, person) DO UPDATE SET
             last_inbound_at = MAX(COALESCE(last_inbound_at, ?3), ?3), updated_at = ?4",
    )?
    .execute(params![number_id, person, at_ms, now])?;
    Ok(())
}

/// Notes a 131047.
pub fn close(tx: &Transaction<'_>, closure: &Closure, now: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO windows (number_id, person, closed_at, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (number_id, person) DO UPDATE SET
             closed_at = MAX(COALESCE(closed_at, ?3), ?3), updated_at = ?4",
    )?
    .execute(params![
        closure.number_id,
        closure.person,
        closure.at_ms,
        now
    ])?;
    Ok(())
}

/// Adds what read receipts need to `inbound_seen` (databases made before).
pub fn add_receiver_columns(conn: &Connection) -> rusqlite::Result<()> {
    for column in ["number_id", "tenants"] {
        if !super::schema::has_column(conn, "inbound_seen", column)? {
            conn.execute(
                &format!("ALTER TABLE inbound_seen ADD COLUMN {column} TEXT"),
                [],
            )?;
        }
    }
    Ok(())
}

/// Who received the inbound WhatsApp message `provider_id`.
pub fn received(conn: &Connection, provider_id: &str) -> rusqlite::Result<Option<Received>> {
    let row: Option<(Option<String>, Option<String>)> = conn
        .prepare_cached("SELECT number_id, tenants FROM inbound_seen WHERE provider_id = ?1")?
        .query_row([provider_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(number_id, tenants)| {
        Some(Received {
            number_id: number_id?,
            tenants: tenants
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
        })
    }))
}

/// The window of `person` with `number_id` (empty when never noted).
pub fn get(conn: &Connection, number_id: &str, person: &str) -> rusqlite::Result<Window> {
    Ok(conn
        .prepare_cached(
            "SELECT last_inbound_at, closed_at FROM windows WHERE number_id = ?1 AND person = ?2",
        )?
        .query_row([number_id, person], |r| {
            Ok(Window {
                last_inbound_ms: r.get(0)?,
                closed_ms: r.get(1)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}
