//! What follows a status report, decided once for both stores: from the record
//! before and the reports in, the record after, the events to send, the
//! transitions to count and the failover leg to queue. The stores only
//! persist the result: SQLite in the same transaction, DynamoDB through its
//! once-only claims.
//!
//! Two ways in, because the stores merge differently:
//! - [`merge`] for a store that merges under its own lock (SQLite's writer):
//!   every change of the current status is seen, so each gets its event.
//! - [`settled`] for a store that merges without a lock (DynamoDB's
//!   `if_not_exists` writes): only the record after a write is known, and the
//!   store claims the event of the status it is in once.

use crate::contract::Envelope;
use crate::status::events::{self, Event};
use crate::status::{History, MessageRecord, Status};

/// What a merge leads to, besides the record itself.
#[derive(Debug, Default)]
pub struct Effects {
    /// One `message.status` event per change of the current status, in order
    /// (none when the store emits no events).
    pub events: Vec<Event>,
    /// Each change as (channel, status), for `herald_status_transitions_total`.
    pub transitions: Vec<(String, Status)>,
    /// The failover leg to queue: a report said the person cannot be reached
    /// and the message has a fallback not sent yet. The record after already
    /// says it was sent ([`MessageRecord::failover_at_ms`]).
    pub failover: Option<Envelope>,
}

/// Merges `incoming` into `record` in rank order. `fails_over` says one of
/// the reports means the person cannot be reached (see
/// [`Entry::fails_over`](crate::status::Entry::fails_over)); `emit` builds
/// the events.
pub fn merge(
    record: &mut MessageRecord,
    incoming: History,
    fails_over: bool,
    now_ms: i64,
    emit: bool,
) -> Effects {
    let mut effects = Effects::default();
    for (status, entry) in incoming {
        let Some(to) = record.merge(status, entry, now_ms).changed_to() else {
            continue;
        };
        effects
            .transitions
            .push((record.latest_channel().to_owned(), to));
        if emit && let Some(event) = events::status_event(record, to, now_ms) {
            effects.events.push(event);
        }
    }
    effects.failover = record.failover_envelope(fails_over);
    if effects.failover.is_some() {
        record.failover_at_ms = Some(now_ms);
    }
    effects
}

/// What follows the status a record is in after a write, for a store that
/// claims it once ([`settled`]).
#[derive(Debug)]
pub struct Settled {
    /// The current status and the channel that reached it.
    pub current: (String, Status),
    /// Its event, when it has one (`accepted` has none).
    pub event: Option<Event>,
}

/// The current status of `record` after a write, with its event; `None` when
/// it has no status yet.
pub fn settled(record: &MessageRecord, now_ms: i64) -> Option<Settled> {
    let current = record.status()?;
    let channel = record
        .entry(current)
        .and_then(|e| e.channel.clone())
        .unwrap_or_else(|| record.latest_channel().to_owned());
    Some(Settled {
        current: (channel, current),
        event: events::status_event(record, current, now_ms),
    })
}

/// The failover leg a report that `fails_over` sends, for a store that
/// claims it once; `None` when the message has no fallback left to send.
pub fn failover(record: &MessageRecord, fails_over: bool) -> Option<Envelope> {
    record.failover_envelope(fails_over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::{Entry, FailureMark, StatusError};

    fn entry(at_ms: i64, error: Option<StatusError>) -> Entry {
        Entry {
            error,
            ..Entry::on("whatsapp", at_ms)
        }
    }

    fn known(id: &str) -> MessageRecord {
        let mut record = MessageRecord::new(id);
        record.api_key_id = "ops".into();
        record.to = "+14155550123".into();
        record.channel = "whatsapp".into();
        record
    }

    #[test]
    fn each_change_of_the_current_status_is_one_event_and_one_transition() {
        let mut record = known("0190a5b4-0000-7000-8000-000000000001");
        let incoming: History = [
            (Status::Sent, entry(2, None)),
            (Status::Submitted, entry(1, None)),
            (Status::Delivered, entry(3, None)),
        ]
        .into();
        let effects = merge(&mut record, incoming, false, 10, true);
        let statuses: Vec<Status> = effects.transitions.iter().map(|t| t.1).collect();
        assert_eq!(
            statuses,
            [Status::Submitted, Status::Sent, Status::Delivered]
        );
        assert_eq!(effects.events.len(), 3);
        assert!(effects.failover.is_none());
        // The same reports again change nothing.
        let again: History = [(Status::Sent, entry(2, None))].into();
        let effects = merge(&mut record, again, false, 11, true);
        assert!(effects.transitions.is_empty() && effects.events.is_empty());
    }

    #[test]
    fn no_events_are_built_when_the_store_emits_none() {
        let mut record = known("0190a5b4-0000-7000-8000-000000000002");
        let incoming: History = [(Status::Submitted, entry(1, None))].into();
        let effects = merge(&mut record, incoming, false, 10, false);
        assert_eq!(effects.transitions.len(), 1);
        assert!(effects.events.is_empty());
    }

    #[test]
    fn a_failure_that_fails_over_without_a_fallback_queues_nothing() {
        let mut record = known("0190a5b4-0000-7000-8000-000000000003");
        let unreachable = StatusError {
            code: Some(131_026.into()),
            title: "undeliverable".into(),
            channel: "whatsapp".into(),
            class: Some(FailureMark::Unreachable),
        };
        let incoming: History = [(Status::Failed, entry(1, Some(unreachable)))].into();
        let effects = merge(&mut record, incoming, true, 10, true);
        assert!(effects.failover.is_none());
        assert_eq!(record.failover_at_ms, None);
        let settled = settled(&record, 10).expect("a status");
        assert_eq!(settled.current, ("whatsapp".to_owned(), Status::Failed));
        assert!(settled.event.is_some());
    }
}
