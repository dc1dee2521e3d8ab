//! Adding an envelope to the queue's table: the one write that both the
//! enqueue and a status's failover make (the rest of the table's life is
//! the store's).

use rusqlite::params;

/// Adds an envelope. An id the queue already holds, has dead-lettered or
/// has a status for (it was delivered, or is being) is not added again:
/// an idempotent retry of a publish whose first outcome was unknown, or
/// of a batch whose request timed out after some of its entries were
/// committed and answered. Returns true when it was added.
pub fn insert(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    body: &str,
    api_key_id: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let added = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO envelopes (id, body, due_at, created_at, api_key_id)
             SELECT ?1, ?2, ?3, ?3, ?4
             WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE id = ?1)
               AND NOT EXISTS (SELECT 1 FROM statuses WHERE id = ?1)",
        )?
        .execute(params![id, body, now_ms, api_key_id])?;
    Ok(added == 1)
}
