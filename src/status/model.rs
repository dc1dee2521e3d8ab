//! One status per message: the statuses, their ranks, and the merge rule
//! every store applies.
//!
//! A message's history is a set of entries keyed by status, each keeping the
//! first time that status was reached. Merging a report inserts its entry if
//! the status is not there yet and changes nothing otherwise, so merging is
//! idempotent and commutative: reports may come twice, in any order, skip
//! statuses or arrive before the send is recorded, and every writer ends with
//! the same history. The current status is a pure function of that set
//! ([`current`]), which is what lets DynamoDB writers merge without locks:
//! each writes only its own entry, with `if_not_exists`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Herald's statuses. The order of the variants is their rank; `Failed` is
/// last but not "highest": see [`current`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The gateway answered 202.
    Accepted,
    /// An operator sent a dead letter back to the queue: the one thing that
    /// lets a failed message move on (its failure is kept in the history).
    Redriven,
    /// The provider accepted the request (wamid, Infobip PENDING).
    Submitted,
    /// The provider sent it on (WhatsApp `sent`).
    Sent,
    /// The recipient's device has it.
    Delivered,
    /// The recipient read (or played) it.
    Read,
    /// Cancelled before it was handed to a provider (`DELETE
    /// /api/v1/messages/{id}`): terminal, as nothing was sent.
    Cancelled,
    /// A permanent failure: the consumer's or the provider's.
    Failed,
}

impl Status {
    /// Every status, in rank order with `Failed` last.
    pub const ALL: [Self; 8] = [
        Self::Accepted,
        Self::Redriven,
        Self::Submitted,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Cancelled,
        Self::Failed,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Redriven => "redriven",
            Self::Submitted => "submitted",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// True for the statuses that prove the recipient got the message, which
    /// win over a failure reported before or after them.
    pub fn proves_delivery(self) -> bool {
        matches!(self, Self::Delivered | Self::Read)
    }
}

/// An error's code: the provider's number (Graph code, Infobip error or
/// status id), or Herald's own name (`opted-out`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorCode {
    /// A provider's numeric code.
    Number(i64),
    /// Herald's name for a failure it decided.
    Name(String),
}

impl From<i64> for ErrorCode {
    fn from(code: i64) -> Self {
        Self::Number(code)
    }
}

impl ErrorCode {
    /// The numeric code, when it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Name(_) => None,
        }
    }
}

/// A failure's details, as kept in the history and shown as `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusError {
    /// The provider's error code, or Herald's name for the failure, when known.
    pub code: Option<ErrorCode>,
    /// What it means, in the provider's words or Herald's.
    pub title: String,
    /// The channel that failed.
    pub channel: String,
    /// Herald's mark on the failure, when Herald decided it or a report
    /// means the person cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureMark>,
}

/// Herald's mark on a failure, stored and shown as `class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMark {
    /// The provider refused the message for good.
    Permanent,
    /// Out of attempts, or unreadable: dead-lettered.
    DeadLetter,
    /// The person cannot be reached on that channel now (WhatsApp's 131026,
    /// 131047, 131049, 130472): a message with a fallback goes by it. Herald's
    /// internal mark, never shown to the client.
    Unreachable,
    /// A mark this version does not know (written by a newer one).
    #[serde(other)]
    Other,
}

/// One reached status: when, on which channel, and what the provider said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When the status was first reached, Unix milliseconds: the provider's
    /// timestamp when its report has one, else Herald's clock.
    pub at_ms: i64,
    /// The channel of the leg that reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The delivery attempt that submitted it (consumer entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The provider's own status name (`delivered`, `played`, `DELIVERED_TO_HANDSET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    /// The failure, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StatusError>,
}

impl StatusError {
    /// The error as the API and events show it: `unreachable` is Herald's
    /// internal marker for failover, not a class the client is told (a
    /// provider's report shows its code, title and channel only).
    pub fn view(&self) -> serde_json::Value {
        let mut value = serde_json::json!(self);
        if self.class == Some(FailureMark::Unreachable)
            && let Some(map) = value.as_object_mut()
        {
            map.remove("class");
        }
        value
    }
}

impl Entry {
    /// An entry reached at `at_ms` on `channel`, with nothing else known yet.
    pub fn on(channel: &str, at_ms: i64) -> Self {
        Self {
            at_ms,
            channel: Some(channel.to_owned()),
            attempt: None,
            provider_status: None,
            error: None,
        }
    }

    /// The same entry, reached by delivery attempt `attempt`.
    pub fn by_attempt(self, attempt: u32) -> Self {
        Self {
            attempt: Some(attempt),
            ..self
        }
    }

    /// True for a failure that sends the message's fallback.
    pub fn fails_over(&self) -> bool {
        self.error
            .as_ref()
            .is_some_and(|e| e.class == Some(FailureMark::Unreachable))
    }
}

/// A message's reached statuses, each with its first entry.
pub type History = BTreeMap<Status, Entry>;

/// The current status of a history: the highest of `delivered`/`read` when
/// either is there (delivery proven wins over a failure); else `cancelled`
/// when it is there (nothing was sent: a refusal recorded after it changes
/// nothing); else `failed` when it is there (terminal over
/// `accepted`/`submitted`/`sent`); else the highest rank reached. `None` for
/// an empty history.
pub fn current(history: &History) -> Option<Status> {
    let highest = history
        .keys()
        .copied()
        .filter(|s| !matches!(s, Status::Failed | Status::Cancelled))
        .max();
    match highest {
        Some(s) if s.proves_delivery() => Some(s),
        _ if history.contains_key(&Status::Cancelled) => Some(Status::Cancelled),
        _ if history.contains_key(&Status::Failed) => Some(Status::Failed),
        other => other,
    }
}

/// What a merge did to the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The current status before.
    pub before: Option<Status>,
    /// The current status after.
    pub after: Option<Status>,
}

impl Change {
    /// The new current status, when the merge changed it.
    pub fn changed_to(self) -> Option<Status> {
        (self.before != self.after).then_some(self.after).flatten()
    }
}

/// Merges one report into a history: its entry is kept if its status is not
/// there yet (the first time a status is reached is the one that counts).
pub fn merge(history: &mut History, status: Status, entry: Entry) -> Change {
    let before = current(history);
    history.entry(status).or_insert(entry);
    Change {
        before,
        after: current(history),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: i64) -> Entry {
        Entry::on("whatsapp", at_ms)
    }

    fn history(statuses: &[Status]) -> History {
        let mut h = History::new();
        for (i, s) in statuses.iter().enumerate() {
            merge(&mut h, *s, entry(i as i64));
        }
        h
    }

    /// The rule, written out independently of `current`: what one pair of
    /// reports must end in, whatever their order.
    fn expected(a: Status, b: Status) -> Status {
        use Status::*;
        match (a, b) {
            (x, y) if x == y => x,
            (Cancelled, other) | (other, Cancelled) => {
                if other.proves_delivery() {
                    other
                } else {
                    Cancelled
                }
            }
            (Failed, other) | (other, Failed) => {
                if other.proves_delivery() {
                    other
                } else {
                    Failed
                }
            }
            (x, y) => x.max(y),
        }
    }

    #[test]
    fn every_pair_in_both_orders_ends_in_the_same_status() {
        for a in Status::ALL {
            for b in Status::ALL {
                let ab = current(&history(&[a, b]));
                let ba = current(&history(&[b, a]));
                assert_eq!(ab, Some(expected(a, b)), "{a:?} then {b:?}");
                assert_eq!(ba, Some(expected(a, b)), "{b:?} then {a:?}");
            }
        }
    }

    #[test]
    fn a_status_never_moves_to_a_lower_rank() {
        for a in Status::ALL {
            for b in Status::ALL {
                let mut h = history(&[a]);
                let change = merge(&mut h, b, entry(9));
                let (before, after) = (change.before.unwrap(), change.after.unwrap());
                let terminal = |s| matches!(s, Status::Failed | Status::Cancelled);
                if !terminal(before) && !terminal(after) {
                    assert!(after >= before, "{a:?} then {b:?}: {before:?} -> {after:?}");
                }
                if before.proves_delivery() {
                    assert!(after.proves_delivery(), "{a:?} then {b:?}");
                }
            }
        }
    }

    #[test]
    fn the_same_report_twice_changes_nothing() {
        for s in Status::ALL {
            let mut h = History::new();
            assert_eq!(merge(&mut h, s, entry(1)).changed_to(), Some(s));
            let again = merge(&mut h, s, entry(2));
            assert_eq!(again.changed_to(), None);
            assert_eq!(h[&s].at_ms, 1, "the first time is kept");
        }
    }

    #[test]
    fn read_without_delivered_is_read() {
        let h = history(&[Status::Accepted, Status::Submitted, Status::Read]);
        assert_eq!(current(&h), Some(Status::Read));
        assert!(!h.contains_key(&Status::Delivered));
    }

    #[test]
    fn delivered_after_failed_wins_and_failed_after_delivered_does_not() {
        let mut h = history(&[Status::Accepted, Status::Submitted, Status::Failed]);
        assert_eq!(
            merge(&mut h, Status::Delivered, entry(5)).changed_to(),
            Some(Status::Delivered)
        );
        let mut h = history(&[Status::Submitted, Status::Delivered]);
        assert_eq!(merge(&mut h, Status::Failed, entry(5)).changed_to(), None);
        assert_eq!(current(&h), Some(Status::Delivered));
        assert!(
            h.contains_key(&Status::Failed),
            "the failure stays in the history"
        );
    }

    #[test]
    fn failed_is_terminal_over_the_statuses_below_delivery() {
        let mut h = history(&[Status::Failed]);
        for s in [Status::Accepted, Status::Submitted, Status::Sent] {
            assert_eq!(merge(&mut h, s, entry(3)).changed_to(), None, "{s:?}");
        }
        assert_eq!(current(&h), Some(Status::Failed));
    }

    #[test]
    fn a_report_before_the_send_is_recorded_merges_to_the_same_end() {
        // The provider's `delivered` arrives before the consumer's `submitted`
        // and the gateway's `accepted` (a slow store write).
        let early = history(&[Status::Delivered, Status::Submitted, Status::Accepted]);
        let in_order = history(&[Status::Accepted, Status::Submitted, Status::Delivered]);
        assert_eq!(current(&early), current(&in_order));
        assert_eq!(
            early.keys().collect::<Vec<_>>(),
            in_order.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_order_of_every_subset_agrees() {
        // All 2^7 subsets, each merged forwards and backwards.
        for mask in 0u32..128 {
            let set: Vec<Status> = Status::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| s)
                .collect();
            let mut reversed = set.clone();
            reversed.reverse();
            assert_eq!(
                current(&history(&set)),
                current(&history(&reversed)),
                "{set:?}"
            );
        }
    }
}
