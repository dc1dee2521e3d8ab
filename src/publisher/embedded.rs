//! Publishing to the embedded durable queue: the 202 waits for the commit.

use serde_json::json;

use super::{BoxFuture, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher};
use crate::contract::Envelope;
use crate::embedded::{DeadLetter, EmbeddedQueue, QueueError};

/// Writes envelopes to the embedded queue.
#[derive(Clone)]
pub struct EmbeddedPublisher {
    queue: EmbeddedQueue,
}

impl EmbeddedPublisher {
    /// A publisher over an open queue.
    pub fn new(queue: EmbeddedQueue) -> Self {
        Self { queue }
    }
}

fn publish_error(error: &QueueError, data_dir: &std::path::Path) -> PublishError {
    let (kind, message) = match error {
        e if e.is_full() => (
            PublishErrorKind::Misconfigured,
            format!(
                "the embedded queue in {} is full (disk full or EMBEDDED_MAX_DB_MB reached): free space or raise the cap",
                data_dir.display()
            ),
        ),
        QueueError::Storage(_) => (
            PublishErrorKind::Misconfigured,
            format!(
                "cannot write to the embedded queue in {}: check the disk and HERALD_DATA_DIR's permissions",
                data_dir.display()
            ),
        ),
        QueueError::Closed | QueueError::Open { .. } => (
            PublishErrorKind::Transient,
            "the embedded queue is shutting down".to_owned(),
        ),
    };
    PublishError {
        kind,
        message,
        source: Some(Box::new(std::io::Error::other(error.to_string()))),
    }
}

impl Publisher for EmbeddedPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            self.queue
                .enqueue(envelope.id.to_string(), envelope.to_json())
                .await
                .map_err(|e| publish_error(&e, self.queue.data_dir()))?;
            Ok(PublishReceipt {
                queue_message_id: None,
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async move {
            match self.queue.stats().await {
                Ok(s) => HealthCheck {
                    name: "queue",
                    healthy: true,
                    detail: json!({
                        "depth": s.depth,
                        "oldestAgeSeconds": s.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
                        "deadLetters": s.dead_letters,
                    }),
                },
                Err(e) => HealthCheck {
                    name: "queue",
                    healthy: false,
                    detail: json!({ "reason": e.to_string() }),
                },
            }
        })
    }

    fn dead_letters(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Option<Result<Vec<DeadLetter>, PublishError>>> {
        Box::pin(async move {
            Some(
                self.queue
                    .dead_letters(limit)
                    .await
                    .map_err(|e| publish_error(&e, self.queue.data_dir())),
            )
        })
    }
}
