//! The embedded queue's storage: one SQLite database in WAL mode with
//! `synchronous = FULL`, so a committed transaction has been fsynced to the WAL
//! and survives `kill -9` and power loss as far as SQLite and the disk's fsync
//! promise. The database is opened in exclusive locking mode: one gateway owns
//! a data directory, and a second one fails to start instead of sharing it.

use std::path::Path;

use rusqlite::{Connection, params};

use super::schema::has_column;
use crate::tenants::Scope;

pub use super::fair::Leased;

/// Which dead letters: messages given up on, or events the receiver never
/// took (`EVENTS_WEBHOOK_URL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// Envelopes (`dead_letters`), each its API key's.
    Messages,
    /// Events (`event_dead_letters`): the deployment's, for admin keys.
    Events,
}

/// A dead-lettered envelope (or event), for listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The envelope id (the message id the client got).
    pub id: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// Why it was given up.
    pub reason: String,
    /// When it was given up, Unix milliseconds.
    pub failed_at_ms: i64,
    /// The envelope itself.
    #[schema(value_type = Object)]
    pub envelope: serde_json::Value,
    /// The API key id that sent it (the dead letter belongs to that tenant).
    #[serde(skip)]
    pub api_key_id: Option<String>,
}

/// Queue figures for `/health`. Depth and dead letters are counters kept in
/// memory by the writer (counted once at open), so reading them costs nothing;
/// the oldest age is one lookup on the `created_at` index, and the count of
/// scheduled envelopes waiting one range of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Envelopes waiting or being delivered.
    pub depth: u64,
    /// Age of the oldest waiting envelope, in milliseconds.
    pub oldest_age_ms: Option<i64>,
    /// Envelopes in the dead-letter table.
    pub dead_letters: u64,
    /// Scheduled envelopes whose time has not come.
    pub scheduled_waiting: u64,
}

/// The database connection; used only from the queue's writer thread.
pub struct Store {
    conn: Connection,
    /// How the lease shares delivery between tenants.
    pub fair: super::fair::Fair,
}

impl Store {
    /// Opens (creating if needed) `queue.sqlite3` in `dir`. `max_bytes` > 0 caps
    /// the database size; writes past it fail as "database or disk is full".
    pub fn open(dir: &Path, max_bytes: u64) -> rusqlite::Result<Self> {
        let conn = Connection::open(dir.join("queue.sqlite3"))?;
        conn.busy_timeout(std::time::Duration::from_millis(0))?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        if max_bytes > 0 {
            let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = i64::try_from(max_bytes).unwrap_or(i64::MAX) / page_size.max(1);
            conn.pragma_update(None, "max_page_count", pages.max(16))?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS envelopes (
                 id TEXT PRIMARY KEY,
                 body TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 due_at INTEGER NOT NULL,
                 leased_until INTEGER,
                 created_at INTEGER NOT NULL,
                 last_error TEXT
             );
             CREATE INDEX IF NOT EXISTS envelopes_created ON envelopes (created_at);
             CREATE TABLE IF NOT EXISTS dead_letters (
                 id TEXT PRIMARY KEY,
                 body TEXT NOT NULL,
                 attempts INTEGER NOT NULL,
                 reason TEXT NOT NULL,
                 failed_at INTEGER NOT NULL,
                 created_at INTEGER NOT NULL
             );",
        )?;
        super::statuses::create_tables(&conn)?;
        super::search::create_tables(&conn)?;
        super::opt_outs::create_table(&conn)?;
        super::windows::create_table(&conn)?;
        super::windows::add_receiver_columns(&conn)?;
        super::templates::create_tables(&conn)?;
        super::downloads::create_table(&conn)?;
        // Databases made before dead letters were scoped to their API key.
        for table in ["envelopes", "dead_letters"] {
            if !has_column(&conn, table, "api_key_id")? {
                conn.execute(
                    &format!("ALTER TABLE {table} ADD COLUMN api_key_id TEXT"),
                    [],
                )?;
                conn.execute(
                    &format!("UPDATE {table} SET api_key_id = json_extract(body, '$.apiKeyId') WHERE json_valid(body)"),
                    [],
                )?;
            }
        }
        add_tenant_columns(&conn)?;
        // Whoever held these leases is gone (we hold the exclusive lock now):
        // deliver them again. At least once, never lost.
        conn.execute(
            "UPDATE envelopes SET leased_until = NULL WHERE leased_until IS NOT NULL",
            [],
        )?;
        Ok(Self {
            conn,
            fair: super::fair::Fair::default(),
        })
    }

    /// Runs `f` in one transaction, committed only if `f` succeeds (dropping the
    /// transaction rolls it back). The commit is the durability point.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Leases up to `limit` due envelopes until `now + lease_ms`, counting
    /// an attempt, shared between tenants ([`super::fair`]).
    pub fn lease(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<Leased>> {
        let tx = self.conn.transaction()?;
        let leased = self.fair.lease(&tx, now_ms, lease_ms, limit)?;
        tx.commit()?;
        Ok(leased)
    }

    /// Removes a delivered envelope. Returns true when it was there.
    pub fn remove(tx: &rusqlite::Transaction<'_>, id: &str) -> rusqlite::Result<bool> {
        let removed = tx
            .prepare_cached("DELETE FROM envelopes WHERE id = ?1")?
            .execute([id])?;
        Ok(removed == 1)
    }

    /// Sends dead letter `id` back to the queue, due now with its attempts
    /// reset, if it exists in `scope`; `true` when it did.
    pub fn redrive(
        tx: &rusqlite::Transaction<'_>,
        id: &str,
        scope: &Scope,
        now_ms: i64,
    ) -> rusqlite::Result<bool> {
        let (key, tenant) = scope_params(scope);
        let moved = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO envelopes (id, body, due_at, created_at, api_key_id, tenant, priority)
                 SELECT id, body, ?4, ?4, api_key_id, tenant,
                        CASE json_extract(body, '$.priority') WHEN 'high' THEN 0 WHEN 'bulk' THEN 2 ELSE 1 END
                 FROM dead_letters
                 WHERE id = ?1 AND (?2 IS NULL OR api_key_id = ?2) AND (?3 IS NULL OR tenant = ?3)",
            )?
            .execute(params![id, key, tenant, now_ms])?;
        if moved == 0 {
            return Ok(false);
        }
        tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?
            .execute([id])?;
        Ok(true)
    }

    /// Deletes dead letter `id` if it exists in `scope`; `true` when it did.
    pub fn delete_dead_letter(
        tx: &rusqlite::Transaction<'_>,
        id: &str,
        scope: &Scope,
    ) -> rusqlite::Result<bool> {
        let (key, tenant) = scope_params(scope);
        let deleted = tx
            .prepare_cached(
                "DELETE FROM dead_letters WHERE id = ?1
                   AND (?2 IS NULL OR api_key_id = ?2) AND (?3 IS NULL OR tenant = ?3)",
            )?
            .execute(params![id, key, tenant])?;
        Ok(deleted == 1)
    }

    /// Releases an envelope to be tried again at `due_ms`; `refund` gives back
    /// the attempt its lease counted (it was never made).
    pub fn reschedule(
        tx: &rusqlite::Transaction<'_>,
        id: &str,
        due_ms: i64,
        error: &str,
        refund: bool,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "UPDATE envelopes SET due_at = ?2, leased_until = NULL, last_error = ?3,
                 attempts = MAX(attempts - ?4, 0) WHERE id = ?1",
        )?
        .execute(params![id, due_ms, error, i64::from(refund)])?;
        Ok(())
    }

    /// Moves an envelope to the dead-letter table. Returns true when the
    /// envelope was there.
    pub fn dead_letter(
        tx: &rusqlite::Transaction<'_>,
        id: &str,
        reason: &str,
        now_ms: i64,
    ) -> rusqlite::Result<bool> {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO dead_letters (id, body, attempts, reason, failed_at, created_at, api_key_id, tenant)
             SELECT id, body, attempts, ?2, ?3, created_at, api_key_id, tenant FROM envelopes WHERE id = ?1",
        )?
        .execute(params![id, reason, now_ms])?;
        Self::remove(tx, id)
    }

    /// Envelopes and dead letters, counted once at open; the writer keeps the
    /// figures up to date from then on.
    pub fn counts(&self) -> rusqlite::Result<(u64, u64)> {
        let depth: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get(0))?;
        let dead: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
        Ok((depth as u64, dead as u64))
    }

    /// When the oldest envelope in line was accepted, or came due (Unix
    /// ms): one index lookup; and how many scheduled envelopes wait for
    /// their time (`created_at` after `now_ms`): one index range.
    pub fn line(&self, now_ms: i64) -> rusqlite::Result<(Option<i64>, u64)> {
        let oldest = self
            .conn
            .prepare_cached("SELECT MIN(created_at) FROM envelopes")?
            .query_row([], |r| r.get(0))?;
        let waiting: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM envelopes WHERE created_at > ?1")?
            .query_row([now_ms], |r| r.get(0))?;
        Ok((oldest, waiting.unsigned_abs()))
    }

    /// A page of `search`.
    pub fn search(&self, search: &crate::search::Search) -> rusqlite::Result<crate::search::Found> {
        super::search::list(&self.conn, search)
    }

    /// The counters `query` sums.
    pub fn message_counts(
        &self,
        query: &crate::search::StatsQuery,
    ) -> rusqlite::Result<Vec<crate::search::Bucket>> {
        super::search::counts(&self.conn, query)
    }

    /// The query plan of a page of `search` (for tests and the README).
    pub fn explain(&self, search: &crate::search::Search) -> rusqlite::Result<Vec<String>> {
        super::search::explain(&self.conn, search)
    }

    /// `waba_id`'s templates.
    pub fn templates(&self, waba_id: &str) -> rusqlite::Result<crate::templates::store::Stored> {
        super::templates::load(&self.conn, waba_id)
    }

    /// The status record of message `id`, if `api_key_id` sent it.
    pub fn status(
        &self,
        id: &str,
        scope: &crate::tenants::Scope,
    ) -> rusqlite::Result<Option<crate::status::MessageRecord>> {
        super::statuses::get(&self.conn, id, scope)
    }

    /// `tenant`'s opt-out of `number`, if any.
    pub fn opt_out(
        &self,
        tenant: &str,
        number: &str,
    ) -> rusqlite::Result<Option<crate::optout::OptOut>> {
        super::opt_outs::get(&self.conn, tenant, number)
    }

    /// The window of `person` with `number_id`.
    pub fn window(&self, number_id: &str, person: &str) -> rusqlite::Result<crate::window::Window> {
        super::windows::get(&self.conn, number_id, person)
    }

    /// Who received the inbound message `provider_id`.
    pub fn received(&self, provider_id: &str) -> rusqlite::Result<Option<crate::window::Received>> {
        super::windows::received(&self.conn, provider_id)
    }

    /// Every opt-out.
    pub fn opt_outs(
        &self,
    ) -> rusqlite::Result<std::collections::HashMap<String, crate::optout::OptOut>> {
        super::opt_outs::load_all(&self.conn)
    }

    /// The newest dead letters of `kind` in `scope`, up to `limit` (events
    /// belong to no key or tenant: listed for admins only).
    pub fn dead_letters(
        &self,
        kind: DeadLetterKind,
        limit: usize,
        scope: &Scope,
    ) -> rusqlite::Result<Vec<DeadLetter>> {
        let sql = match kind {
            DeadLetterKind::Messages => {
                "SELECT id, body, attempts, reason, failed_at, api_key_id FROM dead_letters
                 WHERE (?2 IS NULL OR api_key_id = ?2) AND (?3 IS NULL OR tenant = ?3)
                 ORDER BY failed_at DESC LIMIT ?1"
            }
            DeadLetterKind::Events => {
                "SELECT id, body, attempts, reason, failed_at, NULL FROM event_dead_letters
                 WHERE ?2 IS NULL AND ?3 IS NULL
                 ORDER BY failed_at DESC LIMIT ?1"
            }
        };
        let (key, tenant) = scope_params(scope);
        let mut stmt = self.conn.prepare_cached(sql)?;
        stmt.query_map(params![limit as i64, key, tenant], |r| {
            let body: String = r.get(1)?;
            Ok(DeadLetter {
                id: r.get(0)?,
                envelope: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
                attempts: r.get(2)?,
                reason: r.get(3)?,
                failed_at_ms: r.get(4)?,
                api_key_id: r.get(5)?,
            })
        })?
        .collect()
    }
}

/// A scope as the two optional filters of the dead-letter queries: the
/// key, the tenant (`NULL`: any).
fn scope_params(scope: &Scope) -> (Option<&str>, Option<&str>) {
    match scope {
        Scope::Key(key) => (Some(key), None),
        Scope::Tenant(tenant) => (None, Some(tenant)),
        Scope::Admin => (None, None),
    }
}

/// Databases made before tenants: every row belongs to `default`, every
/// envelope is `normal`; the lease's index is by tenant, priority and due
/// time (it replaces the index by due time alone).
fn add_tenant_columns(conn: &Connection) -> rusqlite::Result<()> {
    for table in ["envelopes", "dead_letters"] {
        if !has_column(conn, table, "tenant")? {
            conn.execute(
                &format!("ALTER TABLE {table} ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'"),
                [],
            )?;
        }
    }
    if !has_column(conn, "envelopes", "priority")? {
        conn.execute(
            "ALTER TABLE envelopes ADD COLUMN priority INTEGER NOT NULL DEFAULT 1",
            [],
        )?;
    }
    conn.execute_batch(
        "DROP INDEX IF EXISTS envelopes_due;
         CREATE INDEX IF NOT EXISTS envelopes_fair ON envelopes (tenant, priority, due_at);
         CREATE INDEX IF NOT EXISTS dead_letters_tenant ON dead_letters (tenant, failed_at);",
    )
}
