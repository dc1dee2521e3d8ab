//! Where accepted envelopes go. The gateway talks to a [`Publisher`] and does not
//! know which one: SNS in production, the embedded durable queue on one machine,
//! or the in-memory recorder in tests. A publisher returns only once the envelope
//! is safe (SNS answered with a message id, or the local write is durable).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

use crate::contract::Envelope;
use crate::embedded::DeadLetter;

pub mod embedded;
pub mod memory;
pub mod sns;

pub use embedded::EmbeddedPublisher;
pub use memory::RecordingPublisher;
pub use sns::SnsPublisher;

/// A boxed future, so that publishers can sit behind `dyn Publisher`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The seam between the HTTP API and the queue behind it.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes one envelope. `Ok` means the envelope will not be lost.
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>>;

    /// Checks that publishing can work right now, for `GET /health`.
    fn check_health(&self) -> BoxFuture<'_, HealthCheck>;

    /// The newest dead letters, where this publisher keeps them (the embedded
    /// queue). `None`: they live elsewhere (with SNS, in the SQS dead-letter queue).
    fn dead_letters(
        &self,
        _limit: usize,
    ) -> BoxFuture<'_, Option<Result<Vec<DeadLetter>, PublishError>>> {
        Box::pin(async { None })
    }
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
    /// The queue asked us to slow down; retry after a short wait.
    Throttled,
    /// A transient failure (timeout, connection, server error); retry soon.
    Transient,
    /// Publishing cannot work until an operator fixes something (missing topic,
    /// credentials, permissions, full disk). Every message would fail alike.
    Misconfigured,
}

/// A failed publish. Nothing was published: the client may retry.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    /// What kind of failure this is.
    pub kind: PublishErrorKind,
    /// For operators: what happened and, for misconfiguration, what to fix.
    pub message: String,
    /// The underlying error, kept for the log line.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
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
        self.source = Some(Box::new(source));
        self
    }

    /// How long a client should wait before retrying (`Retry-After`).
    pub fn retry_after(&self) -> Duration {
        match self.kind {
            PublishErrorKind::Throttled | PublishErrorKind::Transient => Duration::from_secs(1),
            PublishErrorKind::Misconfigured => Duration::from_secs(30),
        }
    }
}
