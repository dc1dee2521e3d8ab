//! Coalescing publishes into `PublishBatch` calls.
//!
//! One task gathers entries: a batch is flushed when it holds 10 entries, when
//! the next entry would take it past 256 KiB, or when the linger has passed
//! since its first entry; when no other batch is in flight it is flushed at
//! once, so that light traffic pays no linger at all. Each batch is sent by its
//! own task (bounded in number), and every entry's outcome goes back to the
//! request waiting for it: a success to its own request only, a failure
//! likewise. SNS can answer 200 with some entries in `Failed`: a retryable
//! failed entry is sent again in a later batch (standard topics only), any
//! other becomes that request's 503.
//!
//! No cycle can wedge it: batch tasks hand retryable entries back through an
//! unbounded channel that only the gathering loop reads, so a batch task never
//! waits for the loop while holding its in-flight permit. Memory is bounded by
//! bytes instead: a publish first takes its size from [`BatcherLimits::max_queued_bytes`]
//! and gives it back when its entry is finished; when the budget is spent the
//! publish is refused at once (503, nothing published).
//!
//! An entry whose request has gone (the client disconnected or the request
//! timed out) is dropped before it is put in a batch: its client was not told
//! it was accepted, and its retry carries the same message id.
//!
//! FIFO topics: entries of one group stay in submission order inside a batch,
//! and failed entries are not re-sent behind their successors; the client's
//! retry (with the same Idempotency-Key, hence the same deduplication id) is the
//! only resend.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::classify_code;
use super::client::{BatchClient, BatchMessage};
use crate::clock::now_ms;
use crate::contract::Envelope;
use crate::publisher::{PublishError, PublishErrorKind, PublishReceipt};

/// SNS's most entries per `PublishBatch`.
pub const MAX_ENTRIES: usize = 10;
/// SNS's largest batch payload: the sum of all messages and their attributes.
/// It is also the largest single message.
pub const MAX_BATCH_BYTES: usize = crate::config::SNS_MAX_MESSAGE_BYTES;
/// Times a retryable failed entry is sent again before the request gets a 503.
const MAX_ENTRY_ATTEMPTS: u32 = 3;

/// How much the batcher may hold and send at once.
#[derive(Debug, Clone, Copy)]
pub struct BatcherLimits {
    /// Most `PublishBatch` calls in flight at once.
    pub max_in_flight: usize,
    /// Most bytes of envelopes waiting or in flight; past it a publish gets a
    /// 503 (throttled) at once.
    pub max_queued_bytes: usize,
}

impl Default for BatcherLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// Whether the batcher is getting anywhere, for `/health`: entries waiting and
/// the last time a `PublishBatch` call came back (or the queue became busy).
#[derive(Debug, Default)]
pub struct Progress {
    waiting: AtomicUsize,
    last_progress_ms: AtomicI64,
}

impl Progress {
    /// Entries admitted and not yet answered.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// How long entries have been waiting with no `PublishBatch` call coming
    /// back; zero when nothing waits.
    pub fn stalled_for(&self) -> Duration {
        if self.waiting() == 0 {
            return Duration::ZERO;
        }
        let since = now_ms() - self.last_progress_ms.load(Ordering::Relaxed);
        Duration::from_millis(since.max(0) as u64)
    }

    fn touch(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn admit(&self) {
        if self.waiting.fetch_add(1, Ordering::Relaxed) == 0 {
            self.touch();
        }
    }
}

/// One envelope waiting to be published, and the request waiting for it.
pub struct Entry {
    pub(super) body: String,
    pub(super) channel: &'static str,
    pub(super) message_type: String,
    pub(super) group_id: Option<String>,
    pub(super) deduplication_id: Option<String>,
    size: usize,
    attempts: u32,
    reply: oneshot::Sender<Result<PublishReceipt, PublishError>>,
    /// This entry's share of the byte budget and of the waiting count; both
    /// are given back when the entry is dropped, answered or not.
    _admission: Admission,
}

struct Admission {
    _bytes: OwnedSemaphorePermit,
    progress: Arc<Progress>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.progress.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The admission side of the batcher: what a publish needs to hand in an entry.
#[derive(Clone)]
pub struct Admitter {
    entries: mpsc::UnboundedSender<Entry>,
    bytes: Arc<Semaphore>,
    progress: Arc<Progress>,
    fifo: bool,
}

impl Admitter {
    /// Serialises the envelope once, checks its size, takes its bytes from the
    /// budget and queues it. The receiver gets the entry's outcome.
    pub fn submit(
        &self,
        envelope: &Envelope,
    ) -> Result<oneshot::Receiver<Result<PublishReceipt, PublishError>>, PublishError> {
        let body = envelope.to_json();
        let message_type = envelope.message_type().to_owned();
        let channel = envelope.channel.as_str();
        let size = body.len()
            + "channel".len()
            + "String".len()
            + channel.len()
            + "type".len()
            + "String".len()
            + message_type.len();
        if size > MAX_BATCH_BYTES {
            return Err(PublishError::new(
                PublishErrorKind::TooLarge,
                format!("the envelope is {size} bytes; SNS takes at most {MAX_BATCH_BYTES}"),
            ));
        }
        let bytes = u32::try_from(size).expect("at most 256 KiB");
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| {
                PublishError::new(
                    PublishErrorKind::Throttled,
                    "the SNS publish queue is full (SNS is slower than the traffic)",
                )
            })?;
        self.progress.admit();
        let (reply, outcome) = oneshot::channel();
        let entry = Entry {
            body,
            channel,
            message_type,
            // FIFO: one group per recipient keeps each person's messages in
            // order while different recipients proceed in parallel. Standard:
            // the tenant, which SNS forwards to SQS standard queues, whose
            // fair queues then share the queue between tenants.
            group_id: Some(if self.fifo {
                envelope.to.as_str().to_owned()
            } else {
                envelope.tenant.clone()
            }),
            deduplication_id: self.fifo.then(|| envelope.queue_id()),
            size,
            attempts: 0,
            reply,
            _admission: Admission {
                _bytes: permit,
                progress: self.progress.clone(),
            },
        };
        self.entries.send(entry).map_err(|_| {
            PublishError::new(PublishErrorKind::Transient, "the SNS batcher has stopped")
        })?;
        Ok(outcome)
    }

    /// The batcher's progress, for `/health`.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }
}

impl BatchMessage for Entry {
    fn body(&self) -> &str {
        &self.body
    }
    fn channel(&self) -> &str {
        self.channel
    }
    fn message_type(&self) -> &str {
        &self.message_type
    }
    fn group_id(&self) -> Option<&str> {
        self.group_id.as_deref()
    }
    fn deduplication_id(&self) -> Option<&str> {
        self.deduplication_id.as_deref()
    }
}

impl Entry {
    fn finish(self, result: Result<PublishReceipt, PublishError>) {
        // The request may have gone (client disconnected, timeout): nothing to tell.
        let _ = self.reply.send(result);
    }

    /// True when nobody waits for this entry any more.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Starts the gathering loop; returns the handle publishes use. Must be called
/// inside a Tokio runtime.
pub fn start(
    client: BatchClient,
    topic_arn: Arc<str>,
    fifo: bool,
    linger: Duration,
    limits: BatcherLimits,
) -> Admitter {
    let (entries, receiver) = mpsc::unbounded_channel();
    let progress = Arc::new(Progress::default());
    tokio::spawn(run(
        client,
        topic_arn,
        fifo,
        linger,
        limits.max_in_flight.max(1),
        receiver,
        progress.clone(),
    ));
    Admitter {
        entries,
        bytes: Arc::new(Semaphore::new(limits.max_queued_bytes.max(MAX_BATCH_BYTES))),
        progress,
        fifo,
    }
}

/// Gathers entries into batches until every publisher handle is gone.
async fn run(
    client: BatchClient,
    topic_arn: Arc<str>,
    fifo: bool,
    linger: Duration,
    max_in_flight: usize,
    mut entries: mpsc::UnboundedReceiver<Entry>,
    progress: Arc<Progress>,
) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    // Retryable entries handed back by batch tasks; read before new entries.
    // The loop holds a sender, so this channel never closes under it.
    let (requeue, mut requeued) = mpsc::unbounded_channel::<Entry>();
    let mut carried: Option<Entry> = None;
    loop {
        let first = match carried.take() {
            Some(e) => e,
            None => {
                let next = tokio::select! {
                    biased;
                    Some(e) = requeued.recv() => Some(e),
                    e = entries.recv() => e,
                };
                match next {
                    Some(e) => e,
                    None => return,
                }
            }
        };
        if first.abandoned() {
            continue;
        }
        // Linger only while another batch is in flight: a lone request (low load)
        // is sent at once, and under load the wait for the batches ahead is what
        // fills the next one.
        let busy = in_flight.available_permits() < max_in_flight;
        let linger = if busy { linger } else { Duration::ZERO };
        let (mut batch, over) = fill(first, &mut requeued, &mut entries, linger).await;
        carried = over;
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // Entries whose caller went away while we waited for a permit are not sent.
        batch.retain(|e| !e.abandoned());
        if batch.is_empty() {
            continue;
        }
        let (client, topic_arn, requeue, progress) = (
            client.clone(),
            topic_arn.clone(),
            requeue.clone(),
            progress.clone(),
        );
        tokio::spawn(async move {
            send_batch(&client, &topic_arn, fifo, batch, &requeue, &progress).await;
            drop(permit);
        });
    }
}

/// Fills a batch after `first` with what is queued (handed-back entries first),
/// waiting up to `linger` for more, until it holds [`MAX_ENTRIES`] or the next
/// entry would pass [`MAX_BATCH_BYTES`]; that entry is returned to start the
/// next batch.
async fn fill(
    first: Entry,
    requeued: &mut mpsc::UnboundedReceiver<Entry>,
    entries: &mut mpsc::UnboundedReceiver<Entry>,
    linger: Duration,
) -> (Vec<Entry>, Option<Entry>) {
    let mut size = first.size;
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < MAX_ENTRIES {
        let next = match requeued.try_recv().or_else(|_| entries.try_recv()) {
            Ok(e) => Some(e),
            Err(_) if linger.is_zero() => None,
            Err(_) => tokio::select! {
                e = entries.recv() => e,
                () = tokio::time::sleep_until(deadline) => None,
            },
        };
        let Some(next) = next else { break };
        if next.abandoned() {
            continue;
        }
        if size + next.size > MAX_BATCH_BYTES {
            return (batch, Some(next));
        }
        size += next.size;
        batch.push(next);
    }
    (batch, None)
}

/// Sends one batch and hands each entry its outcome.
async fn send_batch(
    client: &BatchClient,
    topic_arn: &str,
    fifo: bool,
    batch: Vec<Entry>,
    requeue: &mpsc::UnboundedSender<Entry>,
    progress: &Progress,
) {
    crate::metrics::publish_batch(batch.len());
    let result = client.publish_batch(topic_arn, &batch).await;
    progress.touch();
    let output = match result {
        Ok(output) => output,
        Err(error) => {
            // The same error, cause included, for every entry of the call.
            for entry in batch {
                entry.finish(Err(error.clone()));
            }
            return;
        }
    };

    let mut slots: Vec<Option<Entry>> = batch.into_iter().map(Some).collect();
    for (i, message_id) in output.successful {
        if let Some(entry) = slots.get_mut(i).and_then(Option::take) {
            entry.finish(Ok(PublishReceipt {
                queue_message_id: message_id,
            }));
        }
    }
    let mut resend = Vec::new();
    for (i, code, sender_fault) in output.failed {
        let Some(mut entry) = slots.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let code = code.as_str();
        let kind = if sender_fault {
            PublishErrorKind::Misconfigured
        } else {
            classify_code(code)
        };
        entry.attempts += 1;
        let retryable = matches!(
            kind,
            PublishErrorKind::Throttled | PublishErrorKind::Transient
        );
        if retryable && !fifo && entry.attempts < MAX_ENTRY_ATTEMPTS {
            tracing::debug!(
                code,
                attempt = entry.attempts,
                "SNS failed one batch entry; sending it again"
            );
            resend.push(entry);
            continue;
        }
        let message = match kind {
            PublishErrorKind::Misconfigured => super::errors::remedy(code, topic_arn),
            _ => format!("SNS did not publish the entry: {code}"),
        };
        entry.finish(Err(PublishError::new(kind, message)));
    }
    // An entry SNS did not mention: unknown outcome, so not a 202 and not
    // "nothing was published" either.
    for entry in slots.into_iter().flatten() {
        entry.finish(Err(PublishError::new(
            PublishErrorKind::OutcomeUnknown,
            "SNS returned no result for the entry",
        )));
    }
    requeue_after_pause(resend, requeue).await;
}

/// Sends retryable failed entries back to the gathering loop after one short
/// pause (longer for entries that failed more often), all together. The
/// channel is unbounded, so this never waits for the loop.
async fn requeue_after_pause(entries: Vec<Entry>, requeue: &mpsc::UnboundedSender<Entry>) {
    let Some(most) = entries.iter().map(|e| e.attempts).max() else {
        return;
    };
    tokio::time::sleep(Duration::from_millis(20 * u64::from(most))).await;
    for entry in entries {
        if let Err(mpsc::error::SendError(entry)) = requeue.send(entry) {
            entry.finish(Err(PublishError::new(
                PublishErrorKind::Transient,
                "the SNS batcher has stopped",
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_entries_with_no_call_back_count_as_a_stall() {
        let progress = Progress::default();
        assert_eq!(progress.stalled_for(), Duration::ZERO);
        progress.admit();
        assert!(progress.stalled_for() < Duration::from_secs(1));
        progress
            .last_progress_ms
            .store(now_ms() - 30_000, Ordering::Relaxed);
        assert!(progress.stalled_for() >= Duration::from_secs(30));
        progress.waiting.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(progress.stalled_for(), Duration::ZERO);
    }

    #[test]
    fn a_failed_call_hands_each_entry_its_cause() {
        let error = PublishError::new(PublishErrorKind::OutcomeUnknown, "SNS did not answer")
            .with_source(std::io::Error::other("connection reset by peer"));
        for copy in [error.clone(), error] {
            assert_eq!(
                copy.cause_chain().as_deref(),
                Some("connection reset by peer")
            );
        }
    }
}
