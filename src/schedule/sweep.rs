//! The gateways' sweep of the schedule: every [`SWEEP_EVERY`], the entries
//! due are claimed (one gateway wins each), published to the topic and
//! removed. A message is published within about one sweep period of its due
//! time, plus SNS → SQS → consumer. A publish that failed gives its claim
//! back (unless it may have gone out: then the claim lapses); a gateway that
//! dies between publish and remove leaves the entry to be published again
//! after its claim lapses (at least once, as SQS itself). At shutdown the
//! gateway waits for a sweep in progress.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::contract::Envelope;
use crate::publisher::Publisher;

use super::{Due, ScheduleStore};

/// How often the schedule is read.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Most entries per partition one sweep reads (it reads again at once when
/// it found that many).
const PAGE: usize = 100;

/// Publishes scheduled messages when they come due.
pub struct Sweeper {
    schedule: Arc<dyn ScheduleStore>,
    publisher: Arc<dyn Publisher>,
}

impl Sweeper {
    /// Sweeps `schedule` into `publisher` (the topic).
    pub fn new(schedule: Arc<dyn ScheduleStore>, publisher: Arc<dyn Publisher>) -> Self {
        Self {
            schedule,
            publisher,
        }
    }

    /// Sweeps until `stop` completes.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()> + Send) {
        tokio::pin!(stop);
        loop {
            let busy = match self.sweep_once().await {
                Ok(found) => found >= PAGE,
                Err(e) => {
                    tracing::warn!(error.message = %e, "cannot sweep the schedule; trying again");
                    false
                }
            };
            let wait = if busy { Duration::ZERO } else { SWEEP_EVERY };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Publishes what is due now; returns how many entries it found.
    pub async fn sweep_once(&self) -> Result<usize, crate::status::StoreError> {
        let now = crate::clock::now_ms();
        let due = self.schedule.due(now, PAGE).await?;
        let found = due.len();
        let publishing = due.iter().map(|d| self.release(d, now));
        futures_util::future::join_all(publishing).await;
        Ok(found)
    }

    async fn release(&self, due: &Due, now: i64) {
        match self.schedule.claim(due, now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot claim a due message; the next sweep tries again");
                return;
            }
        }
        let Ok(envelope) = Envelope::from_json(&due.envelope) else {
            tracing::error!(key = %due.sk, "a schedule entry is not an envelope; removed");
            let _ = self.schedule.remove(due).await;
            return;
        };
        if let Err(e) = self.publisher.publish(&envelope).await {
            tracing::warn!(message_id = %envelope.id, error.message = %e, "cannot publish a due message; the next sweep tries again");
            if !e.kind.may_have_published()
                && let Err(e) = self.schedule.release(due).await
            {
                tracing::warn!(error.message = %e, "cannot give back a schedule claim; it lapses");
            }
            return;
        }
        if let Err(e) = self.schedule.remove(due).await {
            tracing::warn!(message_id = %envelope.id, error.message = %e, "published, but its schedule entry stays; it is published again after its claim lapses");
        }
    }
}
