//! What follows a decision besides its acknowledgement: the decision for a
//! failed provider call, its count in `herald_deliveries_total` and its one
//! structured log line.

use super::{Decision, FailureClass, Pipeline, ProviderError};
use crate::contract::Envelope;

impl Pipeline {
    /// The decision for a failed attempt: permanent failures are given up,
    /// account problems wait for an operator whatever the attempt, anything
    /// else is retried until `DELIVERY_MAX_ATTEMPTS`, then dead-lettered.
    pub(super) fn decide(&self, error: ProviderError, attempt: u32) -> Decision {
        match error.class {
            FailureClass::Permanent => Decision::GiveUp {
                code: error.code,
                reason: error.message,
            },
            class if class != FailureClass::Configuration && attempt >= self.max_attempts => {
                Decision::DeadLetter {
                    reason: format!("gave up after {attempt} attempts: {}", error.message),
                }
            }
            class => Decision::Retry {
                after: self.retry.delay(class, attempt, error.retry_after),
                class,
                code: error.code,
                reason: error.message,
                // Account problems are the operator's, not the message's.
                counted: class != FailureClass::Configuration,
            },
        }
    }

    /// Counts a decision in `herald_deliveries_total`.
    pub(super) fn count(&self, envelope: &Envelope, decision: &Decision) {
        let known = decision.code().is_some_and(|code| {
            self.channels
                .for_envelope(envelope)
                .is_some_and(|c| c.knows_code(code))
        });
        crate::metrics::delivery(
            &envelope.tenant,
            envelope.channel.as_str(),
            decision.action(),
            (decision.code(), known),
        );
    }
}

/// Logs a decision as one line, at the level its outcome deserves.
pub(super) fn log_decision(decision: &Decision, message_type: &str) {
    let action = decision.action();
    match decision {
        Decision::Delivered { provider_id } => {
            tracing::info!(action, provider_id = %provider_id, message_type, "message delivered");
        }
        Decision::Retry {
            counted: false,
            after,
            reason,
            ..
        } => tracing::debug!(
            action, retry_in_ms = after.as_millis() as u64, error.message = %reason, "held, not sent: the reason says why (an open circuit, the pair rate, no pacing slot in time); message kept, its attempt not counted"
        ),
        Decision::Retry {
            after,
            class: FailureClass::Configuration,
            code,
            reason,
            ..
        } => tracing::error!(
            action, error.code = code, retry_in_ms = after.as_millis() as u64, error.message = %reason,
            "account or token problem: every message will fail until an operator fixes it; message kept"
        ),
        Decision::Retry {
            after,
            class: FailureClass::Unconfirmed,
            reason,
            ..
        } => tracing::warn!(
            action, retry_in_ms = after.as_millis() as u64, error.message = %reason,
            "sent, answer unknown: the provider may have accepted the message; it will be sent again (a possible duplicate)"
        ),
        Decision::Retry {
            after,
            code,
            reason,
            ..
        } => tracing::warn!(
            action, error.code = code, retry_in_ms = after.as_millis() as u64, error.message = %reason, "delivery will be retried"
        ),
        Decision::GiveUp { code, reason } => {
            tracing::warn!(action, error.code = code, error.message = %reason, "delivery failed permanently");
        }
        Decision::DeadLetter { reason } => {
            tracing::error!(action, error.message = %reason, "sent to the dead-letter path")
        }
        Decision::Cancelled => {
            tracing::info!(action, "cancelled before it was sent: not sent")
        }
    }
}
