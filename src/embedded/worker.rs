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
//!
//! How many deliveries it holds in flight is the pipeline's call
//! ([`Pipeline::in_flight_target`]): enough to fill the rate caps at the
//! observed latency. While every provider's circuit is open it leases nothing.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::{EmbeddedQueue, Leased, QueueError, Settlement, now_ms};
use crate::delivery::{Ack, Decision, Pipeline};

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
    /// Deliveries leased and not yet settled.
    in_flight: Arc<AtomicUsize>,
    lease: Duration,
    /// Settlements that could not be written yet, oldest first.
    pending: Arc<Mutex<Vec<(String, Settlement)>>>,
}

impl Worker {
    /// A worker delivering through `pipeline`, which sets how many
    /// deliveries are in flight and how many attempts a message gets.
    pub fn new(queue: EmbeddedQueue, pipeline: Arc<Pipeline>) -> Self {
        Self {
            queue,
            pipeline,
            in_flight: Arc::default(),
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
                Ok(_) if !self.pipeline.ready_in().is_zero() => {
                    self.pipeline.ready_in().min(MAX_BACKOFF)
                }
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

    /// Writes pending settlements, then leases up to the pipeline's in-flight
    /// target until nothing more is due. Leases nothing while every provider's
    /// circuit is open. Returns how many were leased.
    async fn fill(&self, tasks: &mut JoinSet<()>) -> Result<usize, QueueError> {
        self.write_pending().await?;
        let mut leased = 0;
        loop {
            if !self.pipeline.ready_in().is_zero() {
                return Ok(leased);
            }
            let in_flight = self.in_flight.load(Ordering::Relaxed);
            let mut free = self.pipeline.in_flight_target().saturating_sub(in_flight);
            if let Some(limit) = self.pipeline.take_limit() {
                // A circuit's probe is due: one message, not a lease's worth
                // of refunds.
                free = free.min(limit.saturating_sub(in_flight));
            }
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
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let this = self.clone();
            tasks.spawn(async move {
                this.deliver(envelope).await;
                this.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        Ok(n)
    }

    async fn deliver(&self, leased: Leased) {
        let decision = self
            .pipeline
            .deliver_payload(&leased.body, leased.attempts)
            .await;
        let settlement = settlement(&decision);
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
}

/// The embedded queue's acknowledgement of a decision ([`Decision::ack`]):
/// what was given up on (permanently failed, unreadable, out of attempts) goes
/// to the dead-letter table, where `GET /api/v1/dead-letters` shows it.
fn settlement(decision: &Decision) -> Settlement {
    match decision.ack() {
        Ack::Remove { failure: None } => Settlement::Delivered,
        Ack::Remove {
            failure: Some(reason),
        }
        | Ack::DeadLetter { reason } => Settlement::DeadLetter { reason },
        Ack::Retry { after, counted } => Settlement::Retry {
            due_ms: now_ms() + after.as_millis() as i64,
            error: decision.reason().to_owned(),
            refund: !counted,
        },
    }
}
