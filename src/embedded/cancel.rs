//! Cancelling messages in the embedded default: a message still in the
//! queue that no delivery has taken (never attempted, not leased) is removed
//! with its `cancelled` status (and event) in one transaction; a message a
//! delivery holds, or that has a status of its own, was handed to a provider
//! (or is being), and is not. The writer thread runs the lease and the
//! cancel one after the other, so a message is never both cancelled and sent.

use rusqlite::{OptionalExtension, Transaction, params};

use super::statuses;
use crate::contract::Envelope;
use crate::status::{Cancellation, Entry, History, MessageInfo, MessageRecord, Status};
use crate::tenants::Scope;

/// The writer's cancel: the outcomes left in `outcome`; how many queue
/// rows it removed.
pub(super) fn apply(
    tx: &Transaction<'_>,
    (ids, scope, batch): (&[String], &Scope, Option<&str>),
    outcome: &std::sync::Mutex<Vec<Cancellation>>,
    now: i64,
    emit: bool,
) -> rusqlite::Result<i64> {
    let (outcomes, removed) = cancel_all(tx, (ids, scope, batch), now, emit)?;
    *outcome
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = outcomes;
    Ok(removed)
}

/// Cancels each of `ids` in `scope`; with the outcomes, how many queue rows
/// it removed.
fn cancel_all(
    tx: &Transaction<'_>,
    (ids, scope, batch): (&[String], &Scope, Option<&str>),
    now: i64,
    emit: bool,
) -> rusqlite::Result<(Vec<Cancellation>, i64)> {
    let mut removed = 0;
    let mut outcomes = Vec::with_capacity(ids.len());
    // Given a batch, only its messages are found.
    let mine = |in_scope: bool, of: Option<&str>| in_scope && (batch.is_none() || of == batch);
    for id in ids {
        let (outcome, gone) = cancel(tx, id, &mine, scope, now, emit)?;
        removed += i64::from(gone);
        outcomes.push(outcome);
    }
    Ok((outcomes, removed))
}

fn cancel(
    tx: &Transaction<'_>,
    id: &str,
    mine: &dyn Fn(bool, Option<&str>) -> bool,
    scope: &Scope,
    now: i64,
    emit: bool,
) -> rusqlite::Result<(Cancellation, bool)> {
    let queued: Option<(String, i64, Option<i64>)> = tx
        .prepare_cached("SELECT body, attempts, leased_until FROM envelopes WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let envelope = queued
        .as_ref()
        .and_then(|(body, _, _)| Envelope::from_json(body).ok())
        .filter(|e| {
            mine(
                scope.covers(&e.api_key_id, &e.tenant),
                e.batch_id.as_deref(),
            )
        });
    let recorded = statuses::load(tx, id)?.filter(|r| {
        mine(
            scope.covers(&r.api_key_id, &r.tenant),
            r.batch_id.as_deref(),
        )
    });
    let (Some(envelope), Some((_, attempts, leased_until))) = (envelope, queued) else {
        return Ok((settled(recorded), false));
    };
    let taken = attempts > 0 || leased_until.is_some_and(|until| until > now);
    if taken
        || recorded
            .as_ref()
            .is_some_and(|r| r.status() != Some(Status::Accepted))
    {
        let record =
            recorded.unwrap_or_else(|| MessageRecord::accepted(&MessageInfo::of(&envelope)));
        return Ok((Cancellation::AlreadySent(record), false));
    }
    tx.prepare_cached("DELETE FROM envelopes WHERE id = ?1")?
        .execute(params![id])?;
    let info = MessageInfo::of(&envelope);
    let mut record = recorded.unwrap_or_else(|| MessageRecord::new(id));
    record.fill(&info);
    let entry = Entry::on(&info.channel, now);
    let incoming = History::from([(Status::Cancelled, entry)]);
    statuses::merge_and_save(tx, record, incoming, false, now, emit)?;
    let record = statuses::load(tx, id)?.unwrap_or_else(|| MessageRecord::new(id));
    Ok((Cancellation::Cancelled(record), true))
}

/// The outcome for a message no longer in the queue: cancelled before,
/// handed to a provider, or unknown here.
fn settled(recorded: Option<MessageRecord>) -> Cancellation {
    match recorded {
        None => Cancellation::NotFound,
        Some(r) if r.status() == Some(Status::Cancelled) => Cancellation::Cancelled(r),
        Some(r) => Cancellation::AlreadySent(r),
    }
}
