//! Publishing to the embedded durable queue: the 202 waits for the commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{BoxFuture, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher};
use crate::contract::Envelope;
use crate::embedded::{DeadLetter, EmbeddedQueue, QueueError};

/// How long a failed write keeps `/health` failing: the queue cannot take
/// messages (a full disk, say) until a write succeeds again.
const WRITE_FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// Writes envelopes to the embedded queue.
#[derive(Clone)]
pub struct EmbeddedPublisher {
    queue: EmbeddedQueue,
    last_write_failure: Arc<Mutex<Option<(Instant, String)>>>,
}

impl EmbeddedPublisher {
    /// A publisher over an open queue.
    pub fn new(queue: EmbeddedQueue) -> Self {
        Self {
            queue,
            last_write_failure: Arc::default(),
        }
    }

    fn note_write(&self, failure: Option<&PublishError>) {
        let mut last = self
            .last_write_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = failure.map(|e| (Instant::now(), e.message.clone()));
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
            let result = self
                .queue
                .enqueue(envelope.id.to_string(), envelope.to_json())
                .await
                .map_err(|e| publish_error(&e, self.queue.data_dir()));
            self.note_write(result.as_ref().err());
            result?;
            Ok(PublishReceipt {
                queue_message_id: None,
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async move {
            let write_failure = self
                .last_write_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .filter(|(at, _)| at.elapsed() < WRITE_FAILURE_WINDOW);
            match self.queue.stats().await {
                Ok(s) => HealthCheck {
                    name: "queue",
                    healthy: write_failure.is_none(),
                    detail: json!({
                        "depth": s.depth,
                        "oldestAgeSeconds": s.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
                        "deadLetters": s.dead_letters,
                        "writeFailure": write_failure.map(|(_, reason)| reason),
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
