//! Where accepted envelopes go. The gateway talks to a [`Publisher`] and does not
//! know which one: SNS in production, the embedded durable queue on one machine,
//! or the in-memory recorder in tests. A publisher returns only once the envelope
//! is safe (SNS answered with a message id, or the local write is durable).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::contract::Envelope;
use crate::embedded::{DeadLetter, DeadLetterKind};

pub mod embedded;
pub mod measured;
pub mod memory;
pub mod sns;
pub mod with_status;

pub use embedded::EmbeddedPublisher;
pub use memory::RecordingPublisher;
pub use sns::SnsPublisher;
pub use with_status::StatusRecordingPublisher;

/// A boxed future, so that publishers can sit behind `dyn Publisher`.
pub use futures_util::future::BoxFuture;

/// The seam between the HTTP API and the queue behind it.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes one envelope. `Ok` means the envelope will not be lost.
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>>;

    /// Checks that publishing can work right now, for `GET /health`.
    fn check_health(&self) -> BoxFuture<'_, HealthCheck>;

    /// Where this publisher keeps its dead letters (the embedded queue);
    /// `None`: they live elsewhere (with SNS, in the SQS dead-letter queue).
    fn dead_letters(&self) -> Option<&dyn DeadLetters> {
        None
    }
}

/// Dead letters kept beside the queue, for the operator's API.
pub trait DeadLetters: Send + Sync {
    /// The newest dead letters of `kind`, only those in `scope` (a key's, a
    /// tenant's, an admin's: all).
    fn list<'a>(
        &'a self,
        kind: DeadLetterKind,
        limit: usize,
        scope: &'a crate::tenants::Scope,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, PublishError>>;

    /// Sends dead letter `id` back to the queue (`redrive`) or deletes it,
    /// scoped like [`DeadLetters::list`]: `Ok(false)` when there is no such
    /// dead letter in that scope.
    fn settle<'a>(
        &'a self,
        kind: DeadLetterKind,
        id: &'a str,
        scope: &'a crate::tenants::Scope,
        redrive: bool,
    ) -> BoxFuture<'a, Result<bool, PublishError>>;
}

/// Proof that an envelope was accepted by the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The queue's own id for the message (SNS `MessageId`), when it has one.
    pub queue_message_id: Option<String>,
}

/// The result of one readiness check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The check's name in the `/health` response (`sns`, `queue`).
    pub name: &'static str,
    /// Whether publishing can work.
    pub healthy: bool,
    /// What was found: details for operators, never secrets or account data.
    pub detail: Value,
}

/// How a publish failed, which decides what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishErrorKind {
    /// The queue asked us to slow down; nothing was published; retry after a short wait.
    Throttled,
    /// A transient failure the queue reported for this message; nothing was
    /// published; retry soon.
    Transient,
    /// No answer came (a timeout, a connection lost after the request was sent,
    /// a 5xx, an unreadable response): the message **may have been published**.
    /// The client must retry with the same `Idempotency-Key`, so that the retry
    /// carries the same message id.
    OutcomeUnknown,
    /// The envelope is larger than the queue accepts (SNS: 256 KiB). Retrying
    /// cannot help: `413`.
    TooLarge,
    /// Publishing cannot work until an operator fixes something (missing topic,
    /// credentials, permissions, full disk). Every message would fail alike.
    Misconfigured,
}

impl PublishErrorKind {
    /// The kind's name, a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::OutcomeUnknown => "outcome-unknown",
            Self::TooLarge => "too-large",
            Self::Misconfigured => "misconfigured",
        }
    }

    /// True when the message may have reached the queue despite the error.
    pub fn may_have_published(self) -> bool {
        self == Self::OutcomeUnknown
    }
}

/// A failed publish. Unless its kind is [`PublishErrorKind::OutcomeUnknown`],
/// nothing was published and the client may retry freely.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    /// What kind of failure this is.
    pub kind: PublishErrorKind,
    /// For operators: what happened and, for misconfiguration, what to fix.
    pub message: String,
    /// The underlying error, kept for the log line. Shared, so that one failed
    /// `PublishBatch` call hands the same cause to each of its entries.
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl PublishError {
    /// A failure of the given kind with an operator-facing explanation.
    pub fn new(kind: PublishErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The cause and its own causes on one line, for the log.
    pub fn cause_chain(&self) -> Option<String> {
        let first: &(dyn std::error::Error + 'static) = self.source.as_deref()?;
        Some(crate::telemetry::chain(first))
    }

    /// How long a client should wait before retrying (`Retry-After`).
    pub fn retry_after(&self) -> Duration {
        match self.kind {
            PublishErrorKind::Throttled
            | PublishErrorKind::Transient
            | PublishErrorKind::OutcomeUnknown
            | PublishErrorKind::TooLarge => Duration::from_secs(1),
            PublishErrorKind::Misconfigured => Duration::from_secs(30),
        }
    }
}
