//! The in-process delivery worker of the embedded default: leases due envelopes,
//! delivers them through the shared pipeline, and settles each outcome.
//!
//! Two rules keep "exactly once when nothing fails":
//! - A lease covers the pacing wait: the worker leases for the base lease plus
//!   the pacer's backlog, so an envelope never waits out its lease in the rate
//!   limiter and gets leased (and sent) a second time.
//! - A settlement is never lost: one that cannot be written (a full disk) is
//!   kept in memory and written again before anything new is leased; until it
//!   is, the worker leases nothing and backs off, logging once per transition.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{EmbeddedQueue, Leased, QueueError, Settlement, now_ms};
use crate::channels::whatsapp::FailureClass;
use crate::delivery::{Outcome, Pipeline};

/// How long a lease lasts beyond the pacing wait. Only this process can hold
/// a lease (the database is opened exclusively and a restart clears leases),
/// so this only needs to exceed the longest provider call.
const LEASE: Duration = Duration::from_secs(300);
/// How often the worker looks for retries that came due, when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Longest pause between attempts to write while the queue cannot be written.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Delivers what the embedded queue holds.
#[derive(Clone)]
pub struct Worker {
    queue: EmbeddedQueue,
    pipeline: Arc<Pipeline>,
    max_attempts: u32,
    permits: Arc<Semaphore>,
    lease: Duration,
    /// Settlements that could not be written yet, oldest first.
    pending: Arc<Mutex<Vec<(String, Settlement)>>>,
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
            lease: LEASE,
            pending: Arc::default(),
        }
    }

    /// Sets the base lease (tests shorten it to show leases cover pacing).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Settlements waiting to be written.
    pub fn pending_settlements(&self) -> usize {
        self.lock_pending().len()
    }

    /// Writes pending settlements, leases what is due now, delivers it and
    /// settles it. Returns how many were delivered; nothing is leased while a
    /// settlement cannot be written.
    pub async fn run_once(&self) -> usize {
        let mut tasks = JoinSet::new();
        let n = self.fill(&mut tasks).await.unwrap_or(0);
        while tasks.join_next().await.is_some() {}
        n
    }

    /// Delivers until `stop` completes, then finishes what is in flight.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tasks = JoinSet::new();
        let mut backoff: Option<Duration> = None;
        loop {
            let wait = match self.fill(&mut tasks).await {
                Ok(_) => {
                    if backoff.take().is_some() {
                        tracing::info!("the embedded queue can be written again: delivery resumed");
                    }
                    IDLE_POLL
                }
                Err(e) => {
                    let next = backoff.map_or(IDLE_POLL, |b| (b * 2).min(MAX_BACKOFF));
                    if backoff.is_none() {
                        tracing::error!(error.message = %e, pending_settlements = self.pending_settlements(),
                            "cannot write to the embedded queue: delivery paused until outcomes can be recorded");
                    }
                    backoff = Some(next);
                    next
                }
            };
            while tasks.try_join_next().is_some() {}
            let healthy = backoff.is_none();
            tokio::select! {
                () = &mut stop => break,
                () = self.queue.enqueued.notified(), if healthy => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(
            in_flight = tasks.len(),
            "delivery worker stopping: finishing deliveries in flight"
        );
        while tasks.join_next().await.is_some() {}
        if let Err(e) = self.write_pending().await {
            tracing::error!(error.message = %e, pending_settlements = self.pending_settlements(),
                "outcomes not recorded at shutdown: those envelopes will be delivered again after the restart");
        }
    }

    /// Writes pending settlements, then leases into free permits until
    /// nothing more is due. Returns how many were leased.
    async fn fill(&self, tasks: &mut JoinSet<()>) -> Result<usize, QueueError> {
        self.write_pending().await?;
        let mut leased = 0;
        loop {
            let free = self.permits.available_permits();
            if free == 0 {
                return Ok(leased);
            }
            let n = self.lease_into(tasks, free).await?;
            if n == 0 {
                return Ok(leased);
            }
            leased += n;
        }
    }

    /// Writes every pending settlement (concurrently, so they share a commit).
    /// Those that fail stay pending.
    async fn write_pending(&self) -> Result<(), QueueError> {
        let pending = std::mem::take(&mut *self.lock_pending());
        if pending.is_empty() {
            return Ok(());
        }
        let mut writes = JoinSet::new();
        for (id, settlement) in pending {
            let queue = self.queue.clone();
            writes.spawn(async move {
                let result = queue.settle(id.clone(), settlement.clone()).await;
                (id, settlement, result)
            });
        }
        let mut first_error = None;
        while let Some(done) = writes.join_next().await {
            let (id, settlement, result) = done.expect("a settle task does not panic");
            if let Err(e) = result {
                self.lock_pending().push((id, settlement));
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Leases up to `free` due envelopes and spawns their deliveries. The lease
    /// lasts the base lease plus the time the pacer needs to send them all.
    async fn lease_into(&self, tasks: &mut JoinSet<()>, free: usize) -> Result<usize, QueueError> {
        let lease = self.lease + self.pipeline.pacing_backlog(free);
        let leased = self.queue.lease(lease.as_millis() as i64, free).await?;
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
        Ok(n)
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
        if self
            .queue
            .settle(leased.id.clone(), settlement.clone())
            .await
            .is_err()
        {
            // Kept, and written before anything new is leased; the lease
            // stands meanwhile, so the envelope is not delivered again.
            self.lock_pending().push((leased.id, settlement));
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<(String, Settlement)>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
