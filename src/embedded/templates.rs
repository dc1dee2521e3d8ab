//! The embedded default's templates: one row per (account, name, language)
//! holding the template as JSON, and each account's last listing time.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::templates::store::{Stored, apply_status, merge_listing};
use crate::templates::{Listing, StatusChange, Template};

/// A write to the templates, through the writer thread.
#[derive(Debug, Clone)]
pub enum TemplateWrite {
    /// A sync's list replaces the account's.
    Replace { waba_id: String, listing: Listing },
    /// A status webhook.
    Status(StatusChange),
}

/// Creates the tables (idempotent).
pub fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS templates (
             waba_id TEXT NOT NULL,
             name TEXT NOT NULL,
             language TEXT NOT NULL,
             body TEXT NOT NULL,
             PRIMARY KEY (waba_id, name, language)
         );
         CREATE TABLE IF NOT EXISTS template_syncs (
             waba_id TEXT PRIMARY KEY,
             synced_at INTEGER NOT NULL
         );",
    )
}

/// Applies `write`.
pub fn apply(tx: &Transaction<'_>, write: &TemplateWrite) -> rusqlite::Result<()> {
    match write {
        TemplateWrite::Replace { waba_id, listing } => {
            let merged = merge_listing(listing, &load(tx, waba_id)?.templates);
            tx.execute("DELETE FROM templates WHERE waba_id = ?1", [waba_id])?;
            for t in &merged {
                put(tx, t)?;
            }
            tx.execute(
                "INSERT INTO template_syncs (waba_id, synced_at) VALUES (?1, ?2)
                 ON CONFLICT (waba_id) DO UPDATE SET synced_at = ?2",
                params![waba_id, listing.synced_ms],
            )?;
            Ok(())
        }
        TemplateWrite::Status(change) => {
            let mut current: Vec<Template> = one(tx, change)?.into_iter().collect();
            apply_status(&mut current, change);
            current.iter().try_for_each(|t| put(tx, t))
        }
    }
}

fn put(tx: &Transaction<'_>, t: &Template) -> rusqlite::Result<()> {
    let body = serde_json::to_string(t).expect("a template serialises");
    tx.prepare_cached(
        "INSERT INTO templates (waba_id, name, language, body) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (waba_id, name, language) DO UPDATE SET body = ?4",
    )?
    .execute(params![t.waba_id, t.name, t.language, body])?;
    Ok(())
}

fn one(conn: &Connection, change: &StatusChange) -> rusqlite::Result<Option<Template>> {
    let body: Option<String> = conn
        .prepare_cached(
            "SELECT body FROM templates WHERE waba_id = ?1 AND name = ?2 AND language = ?3",
        )?
        .query_row(params![change.waba_id, change.name, change.language], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
}

/// `waba_id`'s templates and last listing.
pub fn load(conn: &Connection, waba_id: &str) -> rusqlite::Result<Stored> {
    let synced_ms: Option<i64> = conn
        .prepare_cached("SELECT synced_at FROM template_syncs WHERE waba_id = ?1")?
        .query_row([waba_id], |r| r.get(0))
        .optional()?;
    let mut statement = conn.prepare_cached("SELECT body FROM templates WHERE waba_id = ?1")?;
    let templates = statement
        .query_map([waba_id], |r| r.get::<_, String>(0))?
        .filter_map(|b| b.ok().and_then(|b| serde_json::from_str(&b).ok()))
        .collect();
    Ok(Stored {
        synced_ms,
        templates,
    })
}
