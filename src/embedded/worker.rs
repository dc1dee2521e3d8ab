//! The in-process delivery worker of the embedded default: leases due envelopes,
//! delivers them through the shared pipeline, and settles each outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{EmbeddedQueue, Leased, Settlement, now_ms};
use crate::channels::whatsapp::FailureClass;
use crate::delivery::{Outcome, Pipeline};

/// How long a lease lasts. Only a crash leaves a lease unsettled, and a restart
/// clears leases, so this only needs to exceed the longest delivery.
const LEASE: Duration = Duration::from_secs(300);
/// How often the worker looks for retries that came due, when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Delivers what the embedded queue holds.
#[derive(Clone)]
pub struct Worker {
    queue: EmbeddedQueue,
    pipeline: Arc<Pipeline>,
    max_attempts: u32,
    permits: Arc<Semaphore>,
}

impl Worker {
    /// A worker with at most `concurrency` deliveries in flight.
    pub fn new(
        queue: EmbeddedQueue,
        pipeline: Arc<Pipeline>,
        max_attempts: u32,
        concurrency: usize,
    ) -> Self {
        Self {
            queue,
            pipeline,
            max_attempts,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Leases what is due now, delivers it and settles it. Returns how many were handled.
    pub async fn run_once(&self) -> usize {
        let mut tasks = JoinSet::new();
        let n = self.lease_into(&mut tasks).await;
        while tasks.join_next().await.is_some() {}
        n
    }

    /// Delivers until `stop` completes, then finishes what is in flight.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tasks = JoinSet::new();
        loop {
            while self.permits.available_permits() > 0 && self.lease_into(&mut tasks).await > 0 {}
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                () = &mut stop => break,
                () = self.queue.enqueued.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
        tracing::info!(
            in_flight = tasks.len(),
            "delivery worker stopping: finishing deliveries in flight"
        );
        while tasks.join_next().await.is_some() {}
    }

    /// Leases as many due envelopes as there are free permits and spawns their deliveries.
    async fn lease_into(&self, tasks: &mut JoinSet<()>) -> usize {
        let free = self.permits.available_permits();
        if free == 0 {
            return 0;
        }
        let leased = match self.queue.lease(LEASE.as_millis() as i64, free).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error.message = %e, "cannot lease from the embedded queue");
                return 0;
            }
        };
        let n = leased.len();
        for envelope in leased {
            let permit = self
                .permits
                .clone()
                .try_acquire_owned()
                .expect("leased no more than the free permits");
            let this = self.clone();
            tasks.spawn(async move {
                this.deliver(envelope).await;
                drop(permit);
            });
        }
        n
    }

    async fn deliver(&self, leased: Leased) {
        let outcome = self
            .pipeline
            .deliver_payload(&leased.body, leased.attempts)
            .await;
        let settlement = self.settlement(&outcome, leased.attempts);
        if let Settlement::DeadLetter { reason } = &settlement {
            tracing::warn!(envelope_id = %leased.id, attempt = leased.attempts, reason = %reason, "moved to the dead-letter table");
        }
        if let Err(e) = self.queue.settle(leased.id, settlement).await {
            // The lease stands; a restart makes the envelope due again. At least once.
            tracing::error!(error.message = %e, "cannot record a delivery outcome; the envelope will be delivered again after a restart");
        }
    }

    /// What to record for an outcome. Account problems are never dead-lettered
    /// for their attempts: every message would fail alike, so they wait for an operator.
    fn settlement(&self, outcome: &Outcome, attempts: u32) -> Settlement {
        match outcome {
            Outcome::Delivered { .. } => Settlement::Delivered,
            Outcome::Failed { code, reason } => Settlement::DeadLetter {
                reason: match code {
                    Some(c) => format!("permanent failure (WhatsApp error {c}): {reason}"),
                    None => format!("permanent failure: {reason}"),
                },
            },
            Outcome::Rejected { reason } => Settlement::DeadLetter {
                reason: format!("unreadable envelope: {reason}"),
            },
            Outcome::Retry { class, reason, .. }
                if *class != FailureClass::Configuration && attempts >= self.max_attempts =>
            {
                Settlement::DeadLetter {
                    reason: format!("gave up after {attempts} attempts: {reason}"),
                }
            }
            Outcome::Retry { after, reason, .. } => Settlement::Retry {
                due_ms: now_ms() + after.as_millis() as i64,
                error: reason.clone(),
            },
        }
    }
}
