//! Coalescing publishes into `PublishBatch` calls.
//!
//! One task gathers entries: a batch is flushed when it holds 10 entries, when
//! the next entry would take it past 256 KiB, or when the linger has passed
//! since its first entry; when no other batch is in flight it is flushed at
//! once, so that light traffic pays no linger at all. Each batch is sent by its own task (bounded in
//! number), and every entry's outcome goes back to the request waiting for it:
//! a success to its own request only, a failure likewise. SNS can answer 200
//! with some entries in `Failed`: a retryable failed entry is sent again in a
//! later batch (standard topics only), any other becomes that request's 503.
//!
//! FIFO topics: entries of one group stay in submission order inside a batch,
//! and failed entries are not re-sent behind their successors; the client's
//! retry (with the same Idempotency-Key, hence the same deduplication id) is the
//! only resend.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::classify_code;
use super::client::BatchClient;
use crate::contract::Envelope;
use crate::publisher::{PublishError, PublishErrorKind, PublishReceipt};

/// SNS's most entries per `PublishBatch`.
pub const MAX_ENTRIES: usize = 10;
/// SNS's largest batch payload: the sum of all messages and their attributes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most publishes waiting for a batch before `publish` waits (backpressure).
pub const MAX_QUEUED: usize = 16_384;
/// Most batches in flight at once.
const MAX_IN_FLIGHT: usize = 256;
/// Times a retryable failed entry is sent again before the request gets a 503.
const MAX_ENTRY_ATTEMPTS: u32 = 3;

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
}

impl Entry {
    /// Serialises the envelope once; its size counts the message attributes too.
    pub fn new(
        envelope: &Envelope,
        fifo: bool,
        reply: oneshot::Sender<Result<PublishReceipt, PublishError>>,
    ) -> Self {
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
        Self {
            body,
            channel,
            message_type,
            // One group per recipient keeps each person's messages in order while
            // different recipients proceed in parallel.
            group_id: fifo.then(|| envelope.to.as_str().to_owned()),
            deduplication_id: fifo.then(|| envelope.id.to_string()),
            size,
            attempts: 0,
            reply,
        }
    }

    fn finish(self, result: Result<PublishReceipt, PublishError>) {
        // The request may have gone (client disconnected, timeout): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// Gathers entries into batches until every sender is gone. `requeue` lets
/// batch tasks send retryable entries back without keeping the loop alive.
pub async fn run(
    client: BatchClient,
    topic_arn: Arc<str>,
    fifo: bool,
    linger: Duration,
    mut entries: mpsc::Receiver<Entry>,
    requeue: mpsc::WeakSender<Entry>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Entry> = None;
    loop {
        let first = match carried.take() {
            Some(e) => e,
            None => match entries.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        let mut size = first.size;
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        // Linger only while another batch is in flight: a lone request (low load)
        // is sent at once, and under load the wait for the batches ahead is what
        // fills the next one.
        let busy = in_flight.available_permits() < MAX_IN_FLIGHT;
        while batch.len() < MAX_ENTRIES {
            let next = match entries.try_recv() {
                Ok(e) => Some(e),
                Err(_) if linger.is_zero() || !busy => None,
                Err(_) => tokio::select! {
                    e = entries.recv() => e,
                    () = tokio::time::sleep_until(deadline) => None,
                },
            };
            let Some(next) = next else { break };
            if size + next.size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            size += next.size;
            batch.push(next);
        }
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (client, topic_arn, requeue) = (client.clone(), topic_arn.clone(), requeue.clone());
        tokio::spawn(async move {
            send_batch(&client, &topic_arn, fifo, batch, &requeue).await;
            drop(permit);
        });
    }
}

/// Sends one batch and hands each entry its outcome.
async fn send_batch(
    client: &BatchClient,
    topic_arn: &str,
    fifo: bool,
    batch: Vec<Entry>,
    requeue: &mpsc::WeakSender<Entry>,
) {
    let output = match client.publish_batch(topic_arn, &batch).await {
        Ok(output) => output,
        Err(error) => {
            for entry in batch {
                entry.finish(Err(PublishError {
                    kind: error.kind,
                    message: error.message.clone(),
                    source: None,
                }));
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
    // An entry SNS did not mention: unknown outcome, so not a 202.
    for entry in slots.into_iter().flatten() {
        entry.finish(Err(PublishError::new(
            PublishErrorKind::Transient,
            "SNS returned no result for the entry",
        )));
    }
    requeue_after_pause(resend, requeue).await;
}

/// Sends retryable failed entries back to the batcher after one short pause
/// (longer for entries that failed more often), all together.
async fn requeue_after_pause(entries: Vec<Entry>, requeue: &mpsc::WeakSender<Entry>) {
    let Some(most) = entries.iter().map(|e| e.attempts).max() else {
        return;
    };
    tokio::time::sleep(Duration::from_millis(20 * u64::from(most))).await;
    let sender = requeue.upgrade();
    for entry in entries {
        let unsent = match &sender {
            Some(sender) => sender
                .send(entry)
                .await
                .err()
                .map(|mpsc::error::SendError(e)| e),
            None => Some(entry),
        };
        if let Some(entry) = unsent {
            entry.finish(Err(PublishError::new(
                PublishErrorKind::Transient,
                "the SNS batcher has stopped",
            )));
        }
    }
}
