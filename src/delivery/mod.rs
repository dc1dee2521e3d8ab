//! The delivery pipeline: turns one envelope into one provider call and says what
//! should happen to it next. The same code runs under Lambda, under the SQS
//! poller and in-process behind the embedded queue; those differ only in how an
//! envelope arrives and how its outcome is acknowledged.

use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

use crate::channels::console::ConsoleChannel;
use crate::channels::whatsapp::{FailureClass, WhatsAppClient, WhatsAppError};
use crate::config::{DeliveryConfig, DeliveryMode};
use crate::contract::{Envelope, EnvelopeError};

pub mod pacing;
pub mod retry;

pub use pacing::ThroughputLimiter;
pub use retry::RetryPolicy;

/// Where messages are sent.
#[derive(Debug, Clone)]
pub enum Sender {
    /// The WhatsApp Cloud API.
    WhatsApp(WhatsAppClient),
    /// Stdout (development without credentials).
    Console(ConsoleChannel),
}

/// What happened to one envelope, and so what the transport should do with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Accepted by the provider: acknowledge (delete) it.
    Delivered {
        /// The provider's message id (`wamid.…`).
        provider_id: String,
    },
    /// A retryable failure: keep it and try again after `after`.
    Retry {
        /// How long to wait before the next attempt.
        after: Duration,
        /// Why: retryable, throttled or configuration.
        class: FailureClass,
        /// The provider's error code, when it sent one.
        code: Option<i64>,
        /// A one-line explanation.
        reason: String,
    },
    /// A permanent failure: report and acknowledge; retrying cannot help.
    Failed {
        /// The provider's error code, when it sent one.
        code: Option<i64>,
        /// A one-line explanation.
        reason: String,
    },
    /// Not a valid envelope: never sent; goes to the dead-letter path.
    Rejected {
        /// Why it could not be read.
        reason: String,
    },
}

impl Outcome {
    /// The action name used in the outcome's log line.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Retry { class, .. } => class.as_str(),
            Self::Failed { .. } => "failed",
            Self::Rejected { .. } => "dead-letter",
        }
    }
}

/// The sender, its pacing and its retry policy.
#[derive(Debug)]
pub struct Pipeline {
    sender: Sender,
    limiter: ThroughputLimiter,
    retry: RetryPolicy,
}

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the WhatsApp HTTP client: {0}")]
pub struct PipelineError(#[source] reqwest::Error);

impl Pipeline {
    /// Builds the pipeline once per process from the delivery configuration.
    pub fn from_config(config: &DeliveryConfig) -> Result<Self, PipelineError> {
        let sender = match &config.mode {
            DeliveryMode::WhatsApp(w) => {
                Sender::WhatsApp(WhatsAppClient::new(w).map_err(PipelineError)?)
            }
            DeliveryMode::Console => Sender::Console(ConsoleChannel),
        };
        let retry = RetryPolicy {
            base: config.retry_base,
            max: config.retry_max,
            ..RetryPolicy::default()
        };
        Ok(Self::new(
            sender,
            ThroughputLimiter::new(config.max_mps),
            retry,
        ))
    }

    /// Assembles a pipeline from parts (tests shorten the retry policy).
    pub fn new(sender: Sender, limiter: ThroughputLimiter, retry: RetryPolicy) -> Self {
        Self {
            sender,
            limiter,
            retry,
        }
    }

    /// How long the pacer needs before `n` more sends have all had their slot
    /// (zero for the console, which is not paced).
    pub fn pacing_backlog(&self, n: usize) -> Duration {
        match self.sender {
            Sender::WhatsApp(_) => self.limiter.backlog(n),
            Sender::Console(_) => Duration::ZERO,
        }
    }

    /// The longest one provider call can take (its timeout); zero for the console.
    pub fn call_timeout(&self) -> Duration {
        match &self.sender {
            Sender::WhatsApp(client) => client.timeout(),
            Sender::Console(_) => Duration::ZERO,
        }
    }

    /// Describes the sender for the startup log line.
    pub fn describe(&self) -> &'static str {
        match self.sender {
            Sender::WhatsApp(_) => "whatsapp",
            Sender::Console(_) => "console",
        }
    }

    /// Decodes a queue body (an envelope, or SNS's JSON wrapper around one) and
    /// delivers it. `attempt` is 1 for the first delivery.
    pub async fn deliver_payload(&self, body: &str, attempt: u32) -> Outcome {
        match envelope_from_queue_body(body) {
            Ok(envelope) => self.deliver(&envelope, attempt).await,
            Err(e) => {
                let outcome = Outcome::Rejected {
                    reason: e.to_string(),
                };
                tracing::error!(action = outcome.action(), attempt, error.message = %e, "envelope rejected; it is never sent");
                outcome
            }
        }
    }

    /// Delivers one envelope and logs its outcome as one structured line.
    pub async fn deliver(&self, envelope: &Envelope, attempt: u32) -> Outcome {
        let span = tracing::info_span!("deliver", envelope_id = %envelope.id, to = %envelope.to.masked(), attempt);
        async move {
            let outcome = self.send(envelope, attempt).await;
            log_outcome(&outcome, envelope.message_type());
            outcome
        }
        .instrument(span)
        .await
    }

    async fn send(&self, envelope: &Envelope, attempt: u32) -> Outcome {
        match &self.sender {
            Sender::Console(console) => match console.send(envelope) {
                Ok(provider_id) => Outcome::Delivered { provider_id },
                Err(e) => Outcome::Retry {
                    after: self.retry.delay(FailureClass::Retryable, attempt, None),
                    class: FailureClass::Retryable,
                    code: None,
                    reason: format!("stdout write failed: {e}"),
                },
            },
            Sender::WhatsApp(client) => {
                self.limiter.acquire().await;
                match client.send(envelope).await {
                    Ok(response) => Outcome::Delivered {
                        provider_id: response
                            .messages
                            .into_iter()
                            .next()
                            .map(|m| m.id)
                            .unwrap_or_default(),
                    },
                    Err(error) => self.failure(&error, attempt),
                }
            }
        }
    }

    fn failure(&self, error: &WhatsAppError, attempt: u32) -> Outcome {
        let class = error.class();
        let reason = error.to_string();
        match class {
            FailureClass::Permanent => Outcome::Failed {
                code: error.code(),
                reason,
            },
            _ => Outcome::Retry {
                after: self.retry.delay(class, attempt, error.retry_after()),
                class,
                code: error.code(),
                reason,
            },
        }
    }
}

fn log_outcome(outcome: &Outcome, message_type: &str) {
    let action = outcome.action();
    match outcome {
        Outcome::Delivered { provider_id } => {
            tracing::info!(action, provider_id = %provider_id, message_type, "message delivered");
        }
        Outcome::Retry {
            after,
            class: FailureClass::Configuration,
            code,
            reason,
        } => tracing::error!(
            action, error.code = code, retry_in_ms = after.as_millis() as u64, error.message = %reason,
            "WhatsApp account or token problem: every message will fail until an operator fixes it; message kept"
        ),
        Outcome::Retry {
            after,
            class: FailureClass::Unconfirmed,
            reason,
            ..
        } => tracing::warn!(
            action, retry_in_ms = after.as_millis() as u64, error.message = %reason,
            "sent, answer unknown: the provider may have accepted the message; it will be sent again (a possible duplicate)"
        ),
        Outcome::Retry {
            after,
            code,
            reason,
            ..
        } => tracing::warn!(
            action, error.code = code, retry_in_ms = after.as_millis() as u64, error.message = %reason, "delivery will be retried"
        ),
        Outcome::Failed { code, reason } => {
            tracing::warn!(action, error.code = code, error.message = %reason, "delivery failed permanently");
        }
        Outcome::Rejected { reason } => {
            tracing::error!(action, error.message = %reason, "envelope rejected")
        }
    }
}

/// Reads an envelope from a queue message body: the envelope itself (raw
/// delivery) or SNS's notification JSON with the envelope in `Message`.
pub fn envelope_from_queue_body(body: &str) -> Result<Envelope, EnvelopeError> {
    // Cheap check first: only SNS's wrapper has a top-level "Type" key.
    if body.contains("\"Type\"")
        && let Ok(Value::Object(wrapper)) = serde_json::from_str::<Value>(body)
        && wrapper.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(Value::String(message)) = wrapper.get("Message")
    {
        return Envelope::from_json(message);
    }
    Envelope::from_json(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboundMessage;
    use serde_json::json;

    fn envelope_json() -> String {
        let msg =
            OutboundMessage::try_from(json!({"to": "+14155550123", "message": "hi"})).unwrap();
        Envelope::new(uuid::Uuid::now_v7(), msg, "ops").to_json()
    }

    #[test]
    fn raw_and_sns_wrapped_bodies_both_decode() {
        let raw = envelope_json();
        let wrapped = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": raw, "Timestamp": "2026-11-23T12:00:00.000Z"})
        .to_string();
        let a = envelope_from_queue_body(&raw).unwrap();
        let b = envelope_from_queue_body(&wrapped).unwrap();
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn a_wrapper_around_garbage_is_rejected() {
        let wrapped = json!({"Type": "Notification", "Message": "{\"version\": 9}"}).to_string();
        assert!(matches!(
            envelope_from_queue_body(&wrapped),
            Err(EnvelopeError::UnsupportedVersion(9))
        ));
    }
}
