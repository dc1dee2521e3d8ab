//! The SQS long-poller: `herald-consumer` outside Lambda, with `SQS_QUEUE_URL` set.
//!
//! It maps the pipeline's [`Decision`] to SQS: delivered and given up → delete;
//! retry → set the message's visibility timeout to the backoff delay, so SQS
//! itself schedules the retry (and the queue's redrive policy dead-letters it
//! after its max receive count); dead letter → move it to the queue's
//! dead-letter queue at once.
//!
//! How many messages it holds is the pipeline's call
//! ([`Pipeline::in_flight_target`]: enough to fill the rate cap at the observed
//! latency); one receive loop per 200 msg/s of cap (up to 8) keeps it fed.
//! While every
//! provider's circuit is open it receives nothing, so queued messages do not
//! spend receives.
//!
//! While a message is held (waiting for the pacer or for the provider's
//! answer) a heartbeat keeps it invisible: every half of the queue's
//! `VisibilityTimeout` it extends every held message by that timeout
//! (`ChangeMessageVisibilityBatch`), so a timeout shorter than one delivery
//! never makes SQS hand the message to another receive while it is being sent.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use tokio::task::JoinSet;

use super::dead_letter::DeadLetterQueues;
use super::sqs::{self, MAX_VISIBILITY};
use super::sqs_deletes::Deletes;
use crate::contract::is_fifo;
use crate::delivery::Pipeline;

/// SQS's limit on one receive.
const MAX_BATCH: usize = 10;
/// SQS's default visibility timeout, assumed when the queue's cannot be read.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// Most receive calls in flight at once (each takes up to 10 messages).
const MAX_RECEIVERS: usize = 8;
/// Messages per second one receive loop is counted on for (10 per receive at
/// SQS's 20–50 ms per call leaves a wide margin). More loops than needed only
/// add calls: measured against moto, extra concurrent receives made it slower.
const RATE_PER_RECEIVER: u32 = 200;
/// How long a receive loop waits when the in-flight target is reached.
const FULL_WAIT: Duration = Duration::from_millis(10);

/// Polls one queue and delivers what it receives through the pipeline.
#[derive(Clone)]
pub struct SqsPoller {
    sqs: Client,
    queue_url: Arc<str>,
    fifo: bool,
    pipeline: Arc<Pipeline>,
    dead_letters: Arc<DeadLetterQueues>,
    /// Acknowledgements, sent in batches.
    deletes: Deletes,
    /// Messages received and not yet acknowledged, counted against the target.
    in_flight: Arc<AtomicUsize>,
    /// The queue's `VisibilityTimeout`: what the heartbeat extends held messages by.
    visibility: Duration,
    /// Receipt handles of the messages received and not yet acknowledged.
    held: Arc<Mutex<HashSet<String>>>,
    /// Orders extensions and acknowledgements: the heartbeat takes its list and
    /// extends under the write lock; a task stops holding a message under a
    /// read lock before acknowledging it, so a late extension can never undo a
    /// retry delay just set.
    ack_gate: Arc<tokio::sync::RwLock<()>>,
}

/// A receive that failed; the poll loop logs it and tries again. The SDK's
/// error is the source.
#[derive(Debug, thiserror::Error)]
#[error("receiving from SQS failed")]
pub struct PollError(#[source] Box<aws_sdk_sqs::error::SdkError<ReceiveMessageError>>);

impl PollError {
    /// The error as one short line for the log: the SDK's cause as
    /// [`crate::aws::describe`] words it.
    pub fn describe(&self) -> String {
        format!("{self}: {}", crate::aws::describe(&self.0))
    }
}

impl SqsPoller {
    /// Prepares a poller; reads the queue's visibility timeout and finds its
    /// dead-letter queue.
    pub async fn new(sqs: Client, queue_url: &str, pipeline: Arc<Pipeline>) -> Self {
        let visibility = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| tracing::warn!(error.message = %crate::aws::describe(&e), "cannot read the queue's visibility timeout; assuming 30 s"))
            .ok()
            .and_then(|a| a.attributes)
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout).cloned())
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_VISIBILITY, Duration::from_secs);
        if visibility < pipeline.call_timeout() + Duration::from_secs(5) {
            tracing::warn!(
                visibility_timeout_secs = visibility.as_secs(),
                provider_timeout_secs = pipeline.call_timeout().as_secs(),
                "the queue's VisibilityTimeout is shorter than one delivery can take: Herald extends it while delivering, but set it to at least the provider timeout plus 5 s to spare the extra calls"
            );
        }
        let dead_letters = DeadLetterQueues::with_client(sqs.clone());
        match dead_letters.for_queue(queue_url).await {
            Some(url) => {
                tracing::info!(dlq = %url, "dead letters go to the queue's dead-letter queue")
            }
            None => tracing::warn!(
                "the queue has no redrive policy: failing messages are retried until they expire"
            ),
        }
        let queue_url: Arc<str> = queue_url.into();
        Self {
            deletes: Deletes::start(sqs.clone(), queue_url.clone()),
            sqs,
            fifo: is_fifo(&queue_url),
            queue_url,
            pipeline,
            dead_letters: Arc::new(dead_letters),
            in_flight: Arc::default(),
            visibility: visibility.max(Duration::from_secs(1)),
            held: Arc::default(),
            ack_gate: Arc::default(),
        }
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Extends every held message's visibility by the queue's timeout, every
    /// half of it, until aborted.
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
        let _gate = self.ack_gate.write().await;
        let handles: Vec<String> = self.lock_held().iter().cloned().collect();
        let seconds = self.visibility.min(MAX_VISIBILITY).as_secs() as i32;
        for chunk in handles.chunks(MAX_BATCH) {
            let entries = sqs::numbered(chunk)
                .map(|(id, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(id)
                        .receipt_handle(handle)
                        .visibility_timeout(seconds)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let result = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(self.queue_url.as_ref())
                .set_entries(Some(entries))
                .send()
                .await;
            sqs::warn_undone(
                result.as_ref().map(|out| out.failed()),
                chunk.len(),
                "SQS refused to extend the visibility of some messages being delivered",
                "could not extend the visibility of messages being delivered",
            );
        }
    }

    /// Receives once (waiting up to `wait` for messages), delivers everything
    /// received and acknowledges each outcome. Returns how many were handled.
    pub async fn poll_once(&self, wait: Duration) -> Result<usize, PollError> {
        let heartbeat = self.start_heartbeat();
        let mut tasks = JoinSet::new();
        let received = self.receive_into(&mut tasks, wait).await;
        while tasks.join_next().await.is_some() {}
        self.deletes.flush().await;
        heartbeat.abort();
        received
    }

    /// Polls until `shutdown` completes, then stops receiving and finishes the
    /// deliveries in flight before returning.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(queue = %self.queue_url, max_in_flight = self.pipeline.max_in_flight(), fifo = self.fifo, "polling SQS");
        let heartbeat = self.start_heartbeat();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let receivers = self
            .pipeline
            .max_rate()
            .map_or(1, |rate| rate.div_ceil(RATE_PER_RECEIVER) as usize)
            .clamp(1, MAX_RECEIVERS);
        let mut loops = JoinSet::new();
        for _ in 0..receivers {
            loops.spawn(self.clone().receive_loop(stopped.clone()));
        }
        shutdown.await;
        let _ = stop.send(true);
        tracing::info!(
            in_flight = self.in_flight.load(Ordering::Relaxed),
            "shutting down: finishing deliveries in flight"
        );
        while loops.join_next().await.is_some() {}
        self.deletes.flush().await;
        heartbeat.abort();
        tracing::info!("poller stopped");
    }

    /// One receive loop: receives while below the in-flight target, until stopped.
    async fn receive_loop(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        loop {
            let wait = self.pipeline.ready_in();
            let result = tokio::select! {
                _ = stopped.wait_for(|s| *s) => break,
                result = async {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
                        return Ok(0);
                    }
                    self.receive_into(&mut tasks, Duration::from_secs(20)).await
                } => result,
            };
            if let Err(e) = result {
                tracing::warn!(error.message = %e.describe(), "receive failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Reap finished tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Takes up to `want` slots below the in-flight target; returns how many.
    fn reserve(&self, want: usize) -> usize {
        let target = sqs::hold_target(&self.pipeline);
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            let n = target.saturating_sub(current).min(want);
            if n == 0 {
                return 0;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return n,
                Err(now) => current = now,
            }
        }
    }

    fn release_slots(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::Relaxed);
    }

    /// Reserves free slots, receives up to that many messages and spawns
    /// their deliveries into `tasks`.
    async fn receive_into(
        &self,
        tasks: &mut JoinSet<()>,
        wait: Duration,
    ) -> Result<usize, PollError> {
        let slots = self.reserve(MAX_BATCH);
        if slots == 0 {
            tokio::time::sleep(FULL_WAIT).await;
            return Ok(0);
        }
        let output = self
            .sqs
            .receive_message()
            .queue_url(self.queue_url.as_ref())
            .max_number_of_messages(slots as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names(sqs::ATTEMPTS_BEFORE)
            .send()
            .await;
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                self.release_slots(slots);
                return Err(PollError(Box::new(e)));
            }
        };
        let messages = output.messages.unwrap_or_default();
        let count = messages.len();
        self.release_slots(slots - count);
        self.lock_held().extend(
            messages
                .iter()
                .filter_map(|m| m.receipt_handle().map(str::to_owned)),
        );
        let mut lanes = sqs::lanes(messages, self.fifo, |m| {
            m.attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
        });
        sqs::high_first(&mut lanes, self.fifo, |m| m.body());
        for lane in lanes {
            tasks.spawn(self.clone().run_lane(lane));
        }
        Ok(count)
    }

    /// Delivers a lane's messages in order, stopping at the first that stays
    /// (FIFO: the group's later messages wait behind it). Those not tried
    /// become visible again now, rather than after the visibility timeout.
    async fn run_lane(self, lane: Vec<(usize, Message)>) {
        let mut messages = lane.into_iter().map(|(_, m)| m);
        for message in messages.by_ref() {
            if !self.handle(message).await {
                break;
            }
        }
        for rest in messages {
            let gate = self.ack_gate.read().await;
            self.release(&rest);
            drop(gate);
            sqs::set_visibility(&self.sqs, self.received(&rest, 1), Duration::ZERO).await;
        }
    }

    /// The message as the acknowledgement needs it.
    fn received<'a>(&'a self, message: &'a Message, attempt: u32) -> sqs::Received<'a> {
        sqs::Received {
            queue_url: &self.queue_url,
            receipt_handle: message.receipt_handle().unwrap_or_default(),
            message_id: message.message_id().unwrap_or("unknown"),
            body: message.body().unwrap_or_default(),
            attempt,
            fifo: self.fifo,
        }
    }

    /// Stops holding a message: it is being acknowledged or given back.
    fn release(&self, message: &Message) {
        if let Some(handle) = message.receipt_handle() {
            self.lock_held().remove(handle);
        }
        self.release_slots(1);
    }

    /// Delivers one message and carries out the decision's acknowledgement.
    /// True when the message left the queue (delivered, given up, replaced or
    /// dead-lettered).
    async fn handle(&self, message: Message) -> bool {
        let attempt = sqs::attempt(
            message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .map(String::as_str),
            message
                .message_attributes()
                .and_then(|a| a.get(sqs::ATTEMPTS_BEFORE))
                .and_then(|v| v.string_value()),
        );
        let decision = self
            .pipeline
            .deliver_payload(message.body().unwrap_or_default(), attempt)
            .await;
        // Released under the gate: a heartbeat extension already under way
        // lands before this acknowledgement, and a later one skips the message.
        let gate = self.ack_gate.read().await;
        self.release(&message);
        drop(gate);
        let received = self.received(&message, attempt);
        match sqs::carry_out(&self.sqs, &self.dead_letters, received, decision.ack()).await {
            sqs::Left::Delete => {
                if let Some(handle) = message.receipt_handle() {
                    self.deletes.delete(handle);
                }
                true
            }
            sqs::Left::Keep => false,
        }
    }
}
