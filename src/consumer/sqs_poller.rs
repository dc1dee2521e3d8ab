//! The SQS long-poller: `herald-consumer` outside Lambda, with `SQS_QUEUE_URL` set.
//!
//! Success and permanent failure delete the message. A retryable failure sets
//! the message's visibility timeout to the backoff delay, so SQS itself
//! schedules the retry, and the queue's redrive policy dead-letters it after its
//! max receive count. An unreadable envelope is moved to the dead-letter queue at
//! once (found from the queue's redrive policy), since no retry can fix it.
//!
//! While a message is held (waiting for a delivery slot, for the pacer, or for
//! the provider's answer) a heartbeat keeps it invisible: every half of the
//! queue's `VisibilityTimeout` it extends every held message by that timeout
//! (`ChangeMessageVisibilityBatch`), so a timeout shorter than one delivery
//! never makes SQS hand the message to another receive while it is being sent.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::delivery::{Outcome, Pipeline};

/// SQS's limit on one receive.
const MAX_BATCH: usize = 10;
/// SQS's largest visibility timeout (12 hours).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);
/// SQS's default visibility timeout, assumed when the queue's cannot be read.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);

/// Polls one queue and delivers what it receives through the pipeline.
#[derive(Clone)]
pub struct SqsPoller {
    sqs: Client,
    queue_url: Arc<str>,
    dlq_url: Option<Arc<str>>,
    fifo: bool,
    pipeline: Arc<Pipeline>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    /// The queue's `VisibilityTimeout`: what the heartbeat extends held messages by.
    visibility: Duration,
    /// Receipt handles of the messages received and not yet acknowledged.
    held: Arc<Mutex<HashSet<String>>>,
}

/// A receive that failed; the poll loop logs it and tries again.
#[derive(Debug, thiserror::Error)]
#[error("receiving from SQS failed: {0}")]
pub struct PollError(String);

impl SqsPoller {
    /// Prepares a poller; reads the queue's redrive policy (to find its
    /// dead-letter queue) and its visibility timeout.
    pub async fn new(
        sqs: Client,
        queue_url: &str,
        pipeline: Arc<Pipeline>,
        concurrency: usize,
    ) -> Self {
        let attributes = queue_attributes(&sqs, queue_url).await;
        let visibility = attributes
            .as_ref()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_VISIBILITY, Duration::from_secs);
        if visibility < pipeline.call_timeout() + Duration::from_secs(5) {
            tracing::warn!(
                visibility_timeout_secs = visibility.as_secs(),
                provider_timeout_secs = pipeline.call_timeout().as_secs(),
                "the queue's VisibilityTimeout is shorter than one delivery can take: Herald extends it while delivering, but set it to at least the provider timeout plus 5 s to spare the extra calls"
            );
        }
        let dlq_url = find_dead_letter_queue(&sqs, attributes.as_ref()).await;
        match &dlq_url {
            Some(url) => {
                tracing::info!(dlq = %url, "unreadable envelopes go to the queue's dead-letter queue")
            }
            None => tracing::warn!(
                "the queue has no redrive policy: failing messages are retried until they expire"
            ),
        }
        let concurrency = concurrency.max(1);
        Self {
            sqs,
            fifo: queue_url.ends_with(".fifo"),
            queue_url: queue_url.into(),
            dlq_url: dlq_url.map(Into::into),
            pipeline,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            visibility: visibility.max(Duration::from_secs(1)),
            held: Arc::default(),
        }
    }

    /// Messages received and not yet acknowledged.
    pub fn held(&self) -> usize {
        self.lock_held().len()
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Extends every held message's visibility by the queue's timeout, every
    /// half of it, until dropped (aborted).
    fn start_heartbeat(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let every = this.visibility / 2;
            loop {
                tokio::time::sleep(every).await;
                this.extend_held().await;
            }
        })
    }

    async fn extend_held(&self) {
        let handles: Vec<String> = self.lock_held().iter().cloned().collect();
        let seconds = self.visibility.min(MAX_VISIBILITY).as_secs() as i32;
        for chunk in handles.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(seconds)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            if let Err(e) = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(self.queue_url.as_ref())
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(error.message = %DisplayErrorContext(&e), "could not extend the visibility of messages being delivered");
            }
        }
    }

    /// Receives once (waiting up to `wait` for messages), delivers everything
    /// received and acknowledges each outcome. Returns how many were handled.
    pub async fn poll_once(&self, wait: Duration) -> Result<usize, PollError> {
        let heartbeat = self.start_heartbeat();
        let mut tasks = JoinSet::new();
        let received = self.receive_into(&mut tasks, wait).await;
        while tasks.join_next().await.is_some() {}
        heartbeat.abort();
        received
    }

    /// Polls until `shutdown` completes, then stops receiving and finishes the
    /// deliveries in flight before returning.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(queue = %self.queue_url, concurrency = self.concurrency, fifo = self.fifo, "polling SQS");
        tokio::pin!(shutdown);
        let heartbeat = self.start_heartbeat();
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                result = self.receive_into(&mut tasks, Duration::from_secs(20)) => {
                    if let Err(e) = result {
                        tracing::warn!(error.message = %e, "receive failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            // Reap finished tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
        tracing::info!(
            in_flight = tasks.len(),
            "shutting down: finishing deliveries in flight"
        );
        while tasks.join_next().await.is_some() {}
        heartbeat.abort();
        tracing::info!("poller stopped");
    }

    /// Waits for free capacity, receives up to that many messages and spawns
    /// their deliveries into `tasks`.
    async fn receive_into(
        &self,
        tasks: &mut JoinSet<()>,
        wait: Duration,
    ) -> Result<usize, PollError> {
        // At least one permit must be free before receiving, so received messages never wait unseen.
        let first = self.permit().await;
        let free = 1 + self.permits.available_permits().min(MAX_BATCH - 1);
        drop(first);
        let output = self
            .sqs
            .receive_message()
            .queue_url(self.queue_url.as_ref())
            .max_number_of_messages(free as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| PollError(DisplayErrorContext(&e).to_string()))?;
        let messages = output.messages.unwrap_or_default();
        let count = messages.len();
        self.lock_held().extend(
            messages
                .iter()
                .filter_map(|m| m.receipt_handle().map(str::to_owned)),
        );
        if self.fifo {
            // One task, in order, stopping at the first failure: FIFO order holds.
            let permit = self.permit().await;
            let this = self.clone();
            tasks.spawn(async move {
                let mut messages = messages.into_iter();
                for message in messages.by_ref() {
                    if !this.handle(message).await {
                        break;
                    }
                }
                // The rest become visible again now, rather than after the visibility timeout.
                for rest in messages {
                    this.release(&rest);
                    this.set_visibility(&rest, Duration::ZERO).await;
                }
                drop(permit);
            });
        } else {
            for message in messages {
                let permit = self.permit().await;
                let this = self.clone();
                tasks.spawn(async move {
                    this.handle(message).await;
                    drop(permit);
                });
            }
        }
        Ok(count)
    }

    /// Waits for a delivery slot.
    async fn permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Stops extending a message's visibility: it is being acknowledged.
    fn release(&self, message: &Message) {
        if let Some(handle) = message.receipt_handle() {
            self.lock_held().remove(handle);
        }
    }

    /// Delivers one message and acknowledges the outcome. True when the message is done with.
    async fn handle(&self, message: Message) -> bool {
        let attempt = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let outcome = self
            .pipeline
            .deliver_payload(message.body().unwrap_or_default(), attempt)
            .await;
        self.release(&message);
        match outcome {
            Outcome::Delivered { .. } | Outcome::Failed { .. } => {
                self.delete(&message).await;
                true
            }
            Outcome::Retry { after, .. } => {
                self.set_visibility(&message, after).await;
                false
            }
            Outcome::Rejected { .. } => {
                self.dead_letter(&message).await;
                false
            }
        }
    }

    async fn delete(&self, message: &Message) {
        let Some(handle) = message.receipt_handle() else {
            return;
        };
        if let Err(e) = self
            .sqs
            .delete_message()
            .queue_url(self.queue_url.as_ref())
            .receipt_handle(handle)
            .send()
            .await
        {
            // The message reappears after its visibility timeout and is delivered again:
            // at least once, never lost.
            tracing::warn!(error.message = %DisplayErrorContext(&e), "could not delete a handled message; it will be redelivered");
        }
    }

    async fn set_visibility(&self, message: &Message, after: Duration) {
        let Some(handle) = message.receipt_handle() else {
            return;
        };
        let seconds = after.min(MAX_VISIBILITY).as_secs() as i32;
        if let Err(e) = self
            .sqs
            .change_message_visibility()
            .queue_url(self.queue_url.as_ref())
            .receipt_handle(handle)
            .visibility_timeout(seconds)
            .send()
            .await
        {
            tracing::warn!(error.message = %DisplayErrorContext(&e), "could not set the retry delay; the queue's visibility timeout applies");
        }
    }

    async fn dead_letter(&self, message: &Message) {
        let Some(dlq) = &self.dlq_url else {
            tracing::error!(
                "no dead-letter queue: the unreadable message stays until the queue's retention expires"
            );
            return;
        };
        let mut send = self
            .sqs
            .send_message()
            .queue_url(dlq.as_ref())
            .message_body(message.body().unwrap_or_default());
        if dlq.ends_with(".fifo") {
            let id = message.message_id().unwrap_or("unknown");
            send = send
                .message_group_id("dead-letters")
                .message_deduplication_id(id);
        }
        match send.send().await {
            Ok(_) => self.delete(message).await,
            Err(e) => {
                tracing::error!(error.message = %DisplayErrorContext(&e), "could not move the message to the dead-letter queue; it stays")
            }
        }
    }
}

/// The queue's redrive policy and visibility timeout.
async fn queue_attributes(
    sqs: &Client,
    queue_url: &str,
) -> Option<std::collections::HashMap<QueueAttributeName, String>> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| tracing::warn!(error.message = %DisplayErrorContext(&e), "cannot read the queue's attributes"))
        .ok()?;
    attrs.attributes
}

/// The dead-letter queue named by the queue's redrive policy, if any.
async fn find_dead_letter_queue(
    sqs: &Client,
    attributes: Option<&std::collections::HashMap<QueueAttributeName, String>>,
) -> Option<String> {
    let policy = attributes?.get(&QueueAttributeName::RedrivePolicy)?;
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = policy.get("deadLetterTargetArn")?.as_str()?;
    // arn:aws:sqs:<region>:<account>:<name>
    let mut parts = arn.rsplitn(3, ':');
    let name = parts.next()?;
    let account = parts.next()?;
    let out = sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .ok()?;
    out.queue_url().map(str::to_owned)
}
