//! What a delivery attempt means, in terms every channel and every transport
//! share: the failure classes a channel sorts its errors into, the one
//! [`Decision`] the pipeline hands the transport, and the one table
//! ([`Decision::ack`]) from a decision to an [`Ack`], which each transport only
//! carries out in its own terms:
//!
//! | decision | [`Ack`] | embedded queue | SQS (poller, Lambda) | SNS → Lambda |
//! |---|---|---|---|---|
//! | delivered | `Remove` | settled delivered | deleted (Lambda: success) | success |
//! | given up (permanent) | `Remove` + reason | dead-letter table | deleted | success |
//! | retry, counted | `Retry { counted: true }` | due after the delay | visible after the delay (Lambda: also a batch item failure) | invocation fails: Lambda's async retries |
//! | retry, not counted (circuit open, pair rate, no pacing slot, alert) | `Retry { counted: false }` | due after the delay, attempt given back | standard queue: a delayed copy carrying the attempts so far replaces it, so the hold spends no receive toward the redrive policy; FIFO: as counted (order first) | invocation fails |
//! | dead letter | `DeadLetter` | dead-letter table | moved to the queue's DLQ | invocation fails: the on-failure destination |
//! | cancelled (before the provider call) | `Remove` | removed | deleted | success |

use std::time::Duration;

use crate::channels::provider::FailureClass;

/// What the transport must do with one envelope after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The provider accepted it: acknowledge (delete) it.
    Delivered {
        /// The provider's message id (`wamid.…`).
        provider_id: String,
    },
    /// Keep it and try again after `after`.
    Retry {
        /// How long to wait before the next attempt.
        after: Duration,
        /// Why.
        class: FailureClass,
        /// The provider's error code, when it sent one.
        code: Option<i64>,
        /// A one-line explanation.
        reason: String,
        /// False when the attempt does not count against the message: it was
        /// never made (the provider's circuit is open, or no pacing slot before
        /// a deadline), or it failed on the account, not the message. A
        /// transport that counts attempts gives it back.
        counted: bool,
    },
    /// The message cannot be sent (a permanent failure): report it and
    /// acknowledge it; retrying cannot help.
    GiveUp {
        /// The provider's error code, when it sent one.
        code: Option<i64>,
        /// A one-line explanation.
        reason: String,
    },
    /// Send it to the dead-letter path now: the envelope is unreadable, or its
    /// attempts are spent (`DELIVERY_MAX_ATTEMPTS`).
    DeadLetter {
        /// Why.
        reason: String,
    },
    /// It was cancelled (`DELETE /api/v1/messages/{id}`) before the
    /// provider was asked: acknowledge it, send nothing, record nothing (the
    /// cancel recorded `cancelled`).
    Cancelled,
}

impl Decision {
    /// The action name used in the outcome's log line.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Retry {
                class: FailureClass::Configuration,
                ..
            } => "alert",
            Self::Retry { counted: false, .. } => "not-sent",
            Self::Retry { class, .. } => class.as_str(),
            Self::GiveUp { .. } => "failed",
            Self::DeadLetter { .. } => "dead-letter",
            Self::Cancelled => "cancelled",
        }
    }

    /// The one-line explanation; empty for a delivery.
    pub fn reason(&self) -> &str {
        match self {
            Self::Retry { reason, .. }
            | Self::GiveUp { reason, .. }
            | Self::DeadLetter { reason } => reason,
            Self::Delivered { .. } | Self::Cancelled => "",
        }
    }

    /// The provider's error code, when the decision carries one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Retry { code, .. } | Self::GiveUp { code, .. } => *code,
            Self::Delivered { .. } | Self::DeadLetter { .. } | Self::Cancelled => None,
        }
    }

    /// True when the transport should keep the message for another attempt
    /// (Lambda: report it in `batchItemFailures`).
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry { .. })
    }

    /// What the transport does with the message: the one table every
    /// transport reads (see the module's documentation).
    pub fn ack(&self) -> Ack {
        match self {
            Self::Delivered { .. } | Self::Cancelled => Ack::Remove { failure: None },
            Self::GiveUp { code, reason } => Ack::Remove {
                failure: Some(match code {
                    Some(c) => format!("permanent failure (provider error {c}): {reason}"),
                    None => format!("permanent failure: {reason}"),
                }),
            },
            Self::Retry { after, counted, .. } => Ack::Retry {
                after: *after,
                counted: *counted,
            },
            Self::DeadLetter { reason } => Ack::DeadLetter {
                reason: reason.clone(),
            },
        }
    }
}

/// What a transport does with a message after an attempt
/// ([`Decision::ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// It is done with: take it off the queue. `failure` says why it was
    /// given up, for a transport that keeps a record of failures.
    Remove {
        /// Why it failed for good; `None` when it was sent.
        failure: Option<String>,
    },
    /// Keep it and offer it again after `after`.
    Retry {
        /// How long to wait.
        after: Duration,
        /// False when this attempt must not count toward the message's
        /// attempts or the queue's redrive policy.
        counted: bool,
    },
    /// Move it to the dead-letter path now.
    DeadLetter {
        /// Why.
        reason: String,
    },
}
