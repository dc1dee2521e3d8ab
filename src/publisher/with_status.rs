//! Records `accepted` in the status store after each publish (SNS mode with
//! `STATUS_TABLE`). Never on the 202's path: the write starts after the
//! publisher confirmed the envelope and the client is answered without
//! waiting for it; a failed or skipped write is logged and the consumer's
//! later write creates the record. (The embedded default records `accepted`
//! in the enqueue's own transaction instead.)

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{BoxFuture, HealthCheck, PublishError, PublishReceipt, Publisher};
use crate::contract::Envelope;
use crate::status::{self, StatusStore};

/// Most `accepted` writes in flight; past it new ones are skipped rather
/// than queued without bound behind a slow table.
const MAX_IN_FLIGHT: usize = 1024;

/// A publisher that also records `accepted`.
pub struct StatusRecordingPublisher {
    inner: Arc<dyn Publisher>,
    store: Arc<dyn StatusStore>,
    permits: Arc<Semaphore>,
}

impl StatusRecordingPublisher {
    /// Wraps `inner`, recording into `store`.
    pub fn new(inner: Arc<dyn Publisher>, store: Arc<dyn StatusStore>) -> Self {
        Self {
            inner,
            store,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    fn record_accepted(&self, envelope: &Envelope) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!(message_id = %envelope.id, "too many status writes in flight: accepted not recorded (the consumer's write will create the record)");
            return;
        };
        let (store, update) = (self.store.clone(), status::accepted(envelope));
        tokio::spawn(async move {
            if let Err(e) = store.record(vec![update], Vec::new()).await {
                tracing::warn!(error.message = %e, "accepted not recorded (the consumer's write will create the record)");
            }
            drop(permit);
        });
    }
}

impl Publisher for StatusRecordingPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            let receipt = self.inner.publish(envelope).await?;
            self.record_accepted(envelope);
            Ok(receipt)
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        self.inner.check_health()
    }
}
