//! A publisher that counts and times every publish for `/metrics`, around
//! whichever queue is behind it.

use std::sync::Arc;
use std::time::Instant;

use super::{BoxFuture, HealthCheck, PublishError, PublishReceipt, Publisher};
use crate::contract::Envelope;

/// Wraps `inner`: `herald_publishes_total{outcome}` and `herald_publish_duration_seconds`.
pub struct MeasuredPublisher {
    inner: Arc<dyn Publisher>,
}

impl MeasuredPublisher {
    /// Measures `inner`.
    pub fn new(inner: Arc<dyn Publisher>) -> Self {
        Self { inner }
    }
}

impl Publisher for MeasuredPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.publish(envelope).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.kind.as_str(),
            };
            crate::metrics::publish(outcome, started.elapsed().as_secs_f64());
            result
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        self.inner.check_health()
    }

    fn dead_letters(&self) -> Option<&dyn super::DeadLetters> {
        self.inner.dead_letters()
    }
}
