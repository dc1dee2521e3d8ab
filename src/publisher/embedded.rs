//! Publishing to the embedded durable queue: the 202 waits for the commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    BoxFuture, DeadLetters, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher,
};
use crate::contract::Envelope;
use crate::embedded::{DeadLetter, DeadLetterKind, EmbeddedQueue, QueueError};

/// How long a failed write keeps `/health` failing: the queue cannot take
/// messages (a full disk, say) until a write succeeds again.
const WRITE_FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// How long a `/health` answer is reused. `/health` needs no key, so without
/// this anyone could keep the queue's writer thread busy answering it.
const HEALTH_CACHE: Duration = Duration::from_secs(1);

/// Writes envelopes to the embedded queue.
#[derive(Clone)]
pub struct EmbeddedPublisher {
    queue: EmbeddedQueue,
    /// When the last write failed, and a short reason safe to show anyone.
    last_write_failure: Arc<Mutex<Option<(Instant, &'static str)>>>,
    /// The last health answer; the lock also makes concurrent checks wait for
    /// one read instead of each reading.
    health: Arc<tokio::sync::Mutex<Option<(Instant, HealthCheck)>>>,
}

impl EmbeddedPublisher {
    /// A publisher over an open queue.
    pub fn new(queue: EmbeddedQueue) -> Self {
        Self {
            queue,
            last_write_failure: Arc::default(),
            health: Arc::default(),
        }
    }

    fn note_write(&self, failure: Option<&QueueError>) {
        let mut last = self
            .last_write_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = failure.map(|e| (Instant::now(), public_reason(e)));
    }

    fn recent_write_failure(&self) -> Option<&'static str> {
        self.last_write_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .filter(|(at, _)| at.elapsed() < WRITE_FAILURE_WINDOW)
            .map(|(_, reason)| reason)
    }

    async fn read_health(&self) -> HealthCheck {
        let write_failure = self.recent_write_failure();
        match self.queue.stats().await {
            Ok(s) => HealthCheck {
                name: "queue",
                healthy: write_failure.is_none(),
                detail: json!({
                    "depth": s.depth,
                    "oldestAgeSeconds": s.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
                    "deadLetters": s.dead_letters,
                    "scheduledWaiting": s.scheduled_waiting,
                    "writeFailure": write_failure,
                }),
            },
            Err(e) => {
                tracing::warn!(error.message = %e, "health check: cannot read the embedded queue");
                HealthCheck {
                    name: "queue",
                    healthy: false,
                    detail: json!({ "reason": public_reason(&e) }),
                }
            }
        }
    }
}

/// A reason for `/health`, which anyone may read: no paths, no error text.
fn public_reason(error: &QueueError) -> &'static str {
    match error {
        e if e.is_full() => "disk-full",
        QueueError::Storage(_) => "storage-error",
        QueueError::Closed | QueueError::Open { .. } => "shutting-down",
    }
}

/// The error for the log line; the path is for operators, the client never sees it.
fn publish_error(error: QueueError, data_dir: &std::path::Path) -> PublishError {
    let (kind, message) = match &error {
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
    PublishError::new(kind, message).with_source(error)
}

impl Publisher for EmbeddedPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            // A failed write was rolled back: nothing was stored, a definite failure.
            let result = self.queue.enqueue(envelope).await;
            self.note_write(result.as_ref().err());
            result.map_err(|e| publish_error(e, self.queue.data_dir()))?;
            Ok(PublishReceipt {
                queue_message_id: None,
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async move {
            let mut cached = self.health.lock().await;
            if let Some((at, check)) = cached.as_ref()
                && at.elapsed() < HEALTH_CACHE
            {
                let mut check = check.clone();
                // A write failure shows at once, not a second late.
                if let Some(reason) = self.recent_write_failure() {
                    check.healthy = false;
                    check.detail["writeFailure"] = json!(reason);
                }
                return check;
            }
            let check = self.read_health().await;
            *cached = Some((Instant::now(), check.clone()));
            check
        })
    }

    fn dead_letters(&self) -> Option<&dyn DeadLetters> {
        Some(self)
    }
}

impl DeadLetters for EmbeddedPublisher {
    fn list<'a>(
        &'a self,
        kind: DeadLetterKind,
        limit: usize,
        scope: &'a crate::tenants::Scope,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, PublishError>> {
        Box::pin(async move {
            self.queue
                .dead_letters(kind, limit, scope)
                .await
                .map_err(|e| publish_error(e, self.queue.data_dir()))
        })
    }

    fn settle<'a>(
        &'a self,
        kind: DeadLetterKind,
        id: &'a str,
        scope: &'a crate::tenants::Scope,
        redrive: bool,
    ) -> BoxFuture<'a, Result<bool, PublishError>> {
        Box::pin(async move {
            self.queue
                .settle_dead_letter(kind, id, scope, redrive)
                .await
                .map_err(|e| publish_error(e, self.queue.data_dir()))
        })
    }
}
