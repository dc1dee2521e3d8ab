//! The lease's fair share: when several tenants have envelopes due, the
//! lease takes them in proportion to each tenant's `fair_share`, and within
//! a tenant by priority (`high`, `normal`, `bulk`), then by due time.
//!
//! Weighted fair queueing over the tenants that have rows: each tenant has a
//! virtual time that grows by `1 / share` per envelope leased, and the next
//! envelope is the due one of the tenant with the smallest virtual time. A
//! tenant that comes back after a pause starts at the current virtual time
//! (it banks no credit for the pause), so one tenant's queued campaign does
//! not hold another's single send back by more than one lease.
//!
//! No lease scans the queue: one tenant's due envelopes are read through
//! the index `(tenant, priority, due_at)` (a seek per priority), and the
//! tenants with rows are kept in memory (noted on enqueue, read again from
//! the index at most once per [`RESCAN_MS`], which catches failover legs and
//! redriven dead letters). A tenant found with nothing due (all in flight,
//! or retries waiting) is skipped for [`IDLE_MS`] unless it enqueues.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{Transaction, params};

use crate::contract::Priority;

/// One envelope taken for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// The envelope id.
    pub id: String,
    /// The envelope JSON.
    pub body: String,
    /// Delivery attempts including this one.
    pub attempts: u32,
}

/// How often the tenants with rows are read again from the index.
const RESCAN_MS: i64 = 1000;
/// How long a tenant found with nothing due is not looked at again, unless
/// it enqueues: its retries and leased envelopes come due no sooner than
/// this matters (a retry waits its backoff), and a lease does not pay a
/// visit to every idle tenant.
const IDLE_MS: i64 = 100;

/// The lease's state: tenants with rows and their virtual times.
#[derive(Debug, Default)]
pub struct Fair {
    /// Tenants that have rows, with their virtual time.
    clock: BTreeMap<String, f64>,
    /// The virtual time of the latest envelope leased.
    now: f64,
    /// Weights from `TENANTS_FILE` (1 when absent).
    shares: HashMap<String, u32>,
    /// When the tenants were last read from the index.
    scanned_at: Option<i64>,
    /// Tenants found with nothing due, until when they are not visited.
    idle_until: HashMap<String, i64>,
}

impl Fair {
    /// Sets the tenants' weights.
    pub fn set_shares(&mut self, shares: HashMap<String, u32>) {
        self.shares = shares;
    }

    /// Notes that `tenant` has a row (an enqueue).
    pub fn note(&mut self, tenant: &str) {
        self.idle_until.remove(tenant);
        if !self.clock.contains_key(tenant) {
            self.clock.insert(tenant.to_owned(), self.now);
        }
    }

    /// Leases up to `limit` due envelopes until `now_ms + lease_ms`, shared
    /// between tenants as the module documentation says, counting an attempt.
    pub fn lease(
        &mut self,
        tx: &Transaction<'_>,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<Leased>> {
        self.rescan(tx, now_ms)?;
        let mut due: HashMap<String, Vec<String>> = HashMap::new();
        let mut exhausted: HashSet<String> = self
            .idle_until
            .iter()
            .filter(|(_, until)| **until > now_ms)
            .map(|(t, _)| t.clone())
            .collect();
        let mut ids = Vec::with_capacity(limit);
        while ids.len() < limit {
            let Some(tenant) = self.next_tenant(&exhausted) else {
                break;
            };
            // Fetched once per lease, as many as the lease could still take:
            // an empty list after that means the tenant has no more due.
            let queue = match due.entry(tenant.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let mut ids_due = due_ids(tx, &tenant, now_ms, limit - ids.len())?;
                    ids_due.reverse();
                    e.insert(ids_due)
                }
            };
            let Some(id) = queue.pop() else {
                if has_rows(tx, &tenant)? {
                    // Not visited again for a while, but not past its next
                    // due row (a scheduled burst is leased when it is due).
                    let next = next_due(tx, &tenant, now_ms)?;
                    let until = next.map_or(now_ms + IDLE_MS, |d| d.min(now_ms + IDLE_MS));
                    self.idle_until.insert(tenant.clone(), until);
                } else {
                    self.clock.remove(&tenant);
                    self.idle_until.remove(&tenant);
                }
                exhausted.insert(tenant);
                continue;
            };
            self.served(&tenant);
            ids.push(id);
        }
        take(tx, &ids, now_ms, lease_ms)
    }

    /// The tenant with the smallest virtual time that may still have due
    /// envelopes; it starts no earlier than the current virtual time.
    fn next_tenant(&mut self, exhausted: &HashSet<String>) -> Option<String> {
        let (tenant, at) = self
            .clock
            .iter()
            .filter(|(t, _)| !exhausted.contains(*t))
            .min_by(|a, b| a.1.total_cmp(b.1))?;
        let (tenant, at) = (tenant.clone(), *at);
        if at < self.now {
            self.clock.insert(tenant.clone(), self.now);
        }
        Some(tenant)
    }

    /// Advances `tenant`'s virtual time by one envelope.
    fn served(&mut self, tenant: &str) {
        let share = f64::from(self.shares.get(tenant).copied().unwrap_or(1).max(1));
        if let Some(at) = self.clock.get_mut(tenant) {
            self.now = self.now.max(*at);
            *at += 1.0 / share;
        }
    }

    /// Reads the tenants with rows from the index, at most once per
    /// [`RESCAN_MS`] (a skip scan: one seek per tenant).
    fn rescan(&mut self, tx: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<()> {
        if self.scanned_at.is_some_and(|at| now_ms - at < RESCAN_MS) {
            return Ok(());
        }
        self.scanned_at = Some(now_ms);
        let tenants: Vec<String> = tx
            .prepare_cached(
                "WITH RECURSIVE t(x) AS (
                     SELECT MIN(tenant) FROM envelopes
                     UNION ALL
                     SELECT (SELECT MIN(tenant) FROM envelopes WHERE tenant > t.x)
                     FROM t WHERE t.x IS NOT NULL)
                 SELECT x FROM t WHERE x IS NOT NULL",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for tenant in &tenants {
            self.note(tenant);
        }
        Ok(())
    }
}

/// Up to `limit` ids of `tenant`'s due, unleased envelopes: by priority,
/// then due time.
fn due_ids(
    tx: &Transaction<'_>,
    tenant: &str,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id FROM envelopes
         WHERE tenant = ?1 AND priority = ?2 AND due_at <= ?3
           AND (leased_until IS NULL OR leased_until <= ?3)
         ORDER BY due_at LIMIT ?4",
    )?;
    let mut ids = Vec::new();
    for priority in Priority::ALL {
        let left = limit - ids.len();
        if left == 0 {
            break;
        }
        let rows = stmt.query_map(params![tenant, priority.rank(), now_ms, left as i64], |r| {
            r.get(0)
        })?;
        for id in rows {
            ids.push(id?);
        }
    }
    Ok(ids)
}

/// When `tenant`'s next row not due yet comes due (a seek per priority).
fn next_due(tx: &Transaction<'_>, tenant: &str, now_ms: i64) -> rusqlite::Result<Option<i64>> {
    let mut stmt = tx.prepare_cached(
        "SELECT MIN(due_at) FROM envelopes WHERE tenant = ?1 AND priority = ?2 AND due_at > ?3",
    )?;
    let mut next: Option<i64> = None;
    for priority in Priority::ALL {
        let due: Option<i64> =
            stmt.query_row(params![tenant, priority.rank(), now_ms], |r| r.get(0))?;
        next = match (next, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// True when `tenant` has any row (due or not, leased or not).
fn has_rows(tx: &Transaction<'_>, tenant: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM envelopes WHERE tenant = ?1)")?
        .query_row([tenant], |r| r.get(0))
}

/// Leases `ids` until `now_ms + lease_ms`, counting an attempt.
fn take(
    tx: &Transaction<'_>,
    ids: &[String],
    now_ms: i64,
    lease_ms: i64,
) -> rusqlite::Result<Vec<Leased>> {
    let mut stmt = tx.prepare_cached(
        "UPDATE envelopes SET leased_until = ?2 + ?3, attempts = attempts + 1
         WHERE id = ?1
         RETURNING id, body, attempts",
    )?;
    ids.iter()
        .map(|id| {
            stmt.query_row(params![id, now_ms, lease_ms], |r| {
                Ok(Leased {
                    id: r.get(0)?,
                    body: r.get(1)?,
                    attempts: r.get(2)?,
                })
            })
        })
        .collect()
}
