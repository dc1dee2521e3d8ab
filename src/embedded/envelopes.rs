//! Adding an envelope to the queue's table: the one write that both the
//! enqueue and a status's failover make (the rest of the table's life is
//! the store's).

use rusqlite::params;

use crate::contract::Envelope;

/// What a row of the queue holds besides its due time.
#[derive(Debug)]
pub struct Row {
    /// The envelope's queue id.
    pub id: String,
    /// The envelope, serialised.
    pub body: String,
    /// The key that sent it (dead letters are scoped to it).
    pub api_key_id: String,
    /// Its tenant: the lease shares delivery between tenants.
    pub tenant: String,
    /// Its priority's rank within the tenant (0 first).
    pub priority: i64,
    /// When it is due, if later than its enqueue (a scheduled send).
    pub due_ms: Option<i64>,
    /// What the sender knew, for a message's first leg: listed for search
    /// when the row is added.
    pub info: Option<crate::status::MessageInfo>,
}

impl Row {
    /// The row of `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            id: envelope.queue_id(),
            body: envelope.to_json(),
            api_key_id: envelope.api_key_id.clone(),
            tenant: envelope.tenant.clone(),
            priority: envelope.priority.rank(),
            due_ms: envelope.send_at.map(|at| at.timestamp_millis()),
            info: (envelope.failover_from.is_none()
                && envelope.pending_status.is_none()
                && envelope.inbound_media.is_none())
            .then(|| crate::status::MessageInfo::of(envelope)),
        }
    }
}

/// Adds an envelope. An id the queue already holds, has dead-lettered or
/// has a status for (it was delivered, or is being) is not added again:
/// an idempotent retry of a publish whose first outcome was unknown, or
/// of a batch whose request timed out after some of its entries were
/// committed and answered. Returns true when it was added. A scheduled
/// envelope enters the queue's line (`created_at`) when it comes due, so
/// the oldest age measures lateness, not schedules, and the envelopes still
/// waiting for their time are those created after now.
pub fn insert(tx: &rusqlite::Transaction<'_>, row: &Row, now_ms: i64) -> rusqlite::Result<bool> {
    let added = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO envelopes (id, body, due_at, created_at, api_key_id, tenant, priority)
             SELECT ?1, ?2, MAX(?3, COALESCE(?7, 0)), MAX(?3, COALESCE(?7, 0)), ?4, ?5, ?6
             WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE id = ?1)
               AND NOT EXISTS (SELECT 1 FROM statuses WHERE id = ?1)",
        )?
        .execute(params![
            row.id,
            row.body,
            now_ms,
            row.api_key_id,
            row.tenant,
            row.priority,
            row.due_ms
        ])?;
    if added == 1
        && let Some(info) = &row.info
    {
        super::search::insert(tx, info, now_ms)?;
    }
    Ok(added == 1)
}

/// How a leased envelope's delivery ended.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// Delivered: remove it.
    Delivered,
    /// Try again at `due_ms` (Unix ms). `refund`: the attempt was never made
    /// (the provider's circuit was open), so it does not count.
    Retry {
        due_ms: i64,
        error: String,
        refund: bool,
    },
    /// Give up: move it to the dead-letter table.
    DeadLetter { reason: String },
}
