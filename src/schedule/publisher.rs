//! The publisher in front of SNS when scheduled sends are possible: a
//! message due later is kept in the schedule (its `accepted` status written
//! before the `202`, so it can be read and cancelled while it waits);
//! anything else goes straight on.

use std::sync::Arc;

use crate::contract::Envelope;
use crate::publisher::{
    BoxFuture, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher,
};
use crate::status::StatusStore;

use super::ScheduleStore;

/// Schedules what is due later, publishes the rest through `inner`.
pub struct SchedulingPublisher {
    inner: Arc<dyn Publisher>,
    schedule: Arc<dyn ScheduleStore>,
    statuses: Arc<dyn StatusStore>,
}

impl SchedulingPublisher {
    /// Wraps `inner`; scheduled messages go to `schedule`, their `accepted`
    /// status to `statuses`.
    pub fn new(
        inner: Arc<dyn Publisher>,
        schedule: Arc<dyn ScheduleStore>,
        statuses: Arc<dyn StatusStore>,
    ) -> Self {
        Self {
            inner,
            schedule,
            statuses,
        }
    }
}

impl Publisher for SchedulingPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            if envelope.send_at.is_none_or(|at| at <= chrono::Utc::now()) {
                return self.inner.publish(envelope).await;
            }
            self.schedule.put(envelope).await.map_err(|e| {
                PublishError::new(PublishErrorKind::Transient, "cannot schedule the message")
                    .with_source(e)
            })?;
            crate::metrics::scheduled(envelope.channel.as_str());
            let accepted = crate::status::accepted(envelope);
            if let Err(e) = self.statuses.record(vec![accepted], Vec::new()).await {
                // It is scheduled and will be sent; the consumer's write
                // creates the record then.
                tracing::warn!(error.message = %e, "scheduled, but accepted not recorded: it cannot be read or cancelled until it is sent");
            }
            Ok(PublishReceipt {
                queue_message_id: None,
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        self.inner.check_health()
    }
}
