//! A message's times: how late a scheduled one came ([`note_lateness`]),
//! and its expiry. Expiring messages (`expiresAt`, `validitySeconds`): a message is not
//! handed to a provider after its expiry. It is checked before every
//! attempt (a retry, a hold for pacing, an open circuit or the pair rate
//! each come back through here), and a pacing wait never runs past it.
//! An expired message is `failed` with code `expired` (an event follows, as
//! for any status).

use chrono::Utc;
use tokio::time::Instant;

use super::{Decision, Pipeline};
use crate::contract::Envelope;

/// The error code of an expired message.
pub const EXPIRED_CODE: &str = "expired";

impl Pipeline {
    /// The decision for a message past its expiry (recorded as `failed`,
    /// code `expired`), or `None` to go on.
    pub(super) async fn expired(&self, envelope: &Envelope, attempt: u32) -> Option<Decision> {
        let at = envelope.expires_at?;
        if !is_past(envelope) {
            return None;
        }
        let reason = format!(
            "the message expired at {} before it could be sent",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        Some(self.refuse(envelope, attempt, EXPIRED_CODE, reason).await)
    }
}

/// Counts how late a scheduled message came to its first attempt that
/// counts, the pacer's wait included (`herald_schedule_lateness_seconds`).
pub(super) fn note_lateness(envelope: &Envelope, attempt: u32, decision: &Decision) {
    // A hold gives its attempt back: the next is the first again.
    let held = matches!(decision, Decision::Retry { counted: false, .. });
    if attempt != 1 || held || envelope.pending_status.is_some() || envelope.failover_from.is_some()
    {
        return;
    }
    if let Some(at) = envelope.send_at {
        let late = (Utc::now() - at).num_milliseconds().max(0);
        crate::metrics::schedule_lateness(late as f64 / 1000.0);
    }
}

/// True when the envelope has an expiry and it has passed.
pub(super) fn is_past(envelope: &Envelope) -> bool {
    envelope.expires_at.is_some_and(|at| Utc::now() >= at)
}

/// `deadline`, brought forward to the envelope's expiry: a wait for a
/// pacing slot ends there (and the message, held, expires on its return).
pub(super) fn until_expiry(envelope: &Envelope, deadline: Option<Instant>) -> Option<Instant> {
    let Some(at) = envelope.expires_at else {
        return deadline;
    };
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    let expiry = Instant::now() + left;
    Some(deadline.map_or(expiry, |d| d.min(expiry)))
}

/// A retry or hold brought forward to the envelope's expiry: the message
/// comes back when it expires, and is recorded `expired` then rather than
/// after a long hold.
pub(super) fn cap_retry(envelope: &Envelope, decision: Decision) -> Decision {
    let (
        Some(at),
        Decision::Retry {
            after,
            class,
            code,
            reason,
            counted,
        },
    ) = (envelope.expires_at, &decision)
    else {
        return decision;
    };
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    if *after <= left {
        return decision;
    }
    Decision::Retry {
        // Just past it, so that the next look finds it expired.
        after: left + std::time::Duration::from_millis(10),
        class: *class,
        code: *code,
        reason: reason.clone(),
        counted: *counted,
    }
}
