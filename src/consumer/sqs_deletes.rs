//! Deleting handled SQS messages in batches: one `DeleteMessageBatch` call for
//! up to ten acknowledgements gathered within a few milliseconds, instead of one
//! `DeleteMessage` call per message. At the cap that is a tenth of the calls
//! (SQS bills per call; the emulator in the tests could not keep up with one per
//! message). A delete that fails leaves the message to reappear after its
//! visibility timeout: delivered again, never lost.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::sqs;

/// SQS's most entries per batch call.
const MAX_BATCH: usize = 10;
/// How long the first delete of a batch waits for others to join it.
const LINGER: Duration = Duration::from_millis(20);
/// Most batch calls in flight at once: at 1,000 msg/s that is 100 calls a
/// second, more than one call at a time can make.
const MAX_IN_FLIGHT: usize = 8;

enum Command {
    Delete(String),
    Flush(oneshot::Sender<()>),
}

/// The handle the poller acknowledges through; cheap to clone.
#[derive(Clone)]
pub struct Deletes {
    commands: mpsc::UnboundedSender<Command>,
}

impl Deletes {
    /// Starts the batching task for `queue_url`; it ends when every handle is dropped.
    pub fn start(sqs: Client, queue_url: Arc<str>) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(sqs, queue_url, receiver));
        Self { commands }
    }

    /// Queues the delete of one received message.
    pub fn delete(&self, receipt_handle: &str) {
        let _ = self
            .commands
            .send(Command::Delete(receipt_handle.to_owned()));
    }

    /// Returns once every delete queued before it has been sent.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn run(sqs: Client, queue_url: Arc<str>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let calls = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut sending = JoinSet::new();
    while let Some(first) = commands.recv().await {
        while sending.try_join_next().is_some() {}
        let mut handles = Vec::with_capacity(MAX_BATCH);
        let mut flushes = Vec::new();
        let mut next = Some(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while let Some(command) = next.take() {
            match command {
                Command::Delete(handle) => handles.push(handle),
                Command::Flush(done) => flushes.push(done),
            }
            if handles.len() >= MAX_BATCH || !flushes.is_empty() {
                break;
            }
            next = match commands.try_recv() {
                Ok(c) => Some(c),
                Err(_) if handles.is_empty() => None,
                Err(_) => tokio::select! {
                    c = commands.recv() => c,
                    () = tokio::time::sleep_until(deadline) => None,
                },
            };
        }
        if !handles.is_empty() {
            let permit = calls
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (sqs, queue_url) = (sqs.clone(), queue_url.clone());
            sending.spawn(async move {
                send(&sqs, &queue_url, &handles).await;
                drop(permit);
            });
        }
        if !flushes.is_empty() {
            // Everything queued before the flush has been handed to a call;
            // wait for those calls.
            while sending.join_next().await.is_some() {}
            for done in flushes {
                let _ = done.send(());
            }
        }
    }
    while sending.join_next().await.is_some() {}
}

async fn send(sqs: &Client, queue_url: &str, handles: &[String]) {
    let entries = sqs::numbered(handles)
        .map(|(id, handle)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(id)
                .receipt_handle(handle)
                .build()
                .expect("id and receipt handle are set")
        })
        .collect();
    let result = sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await;
    sqs::warn_undone(
        result.as_ref().map(|out| out.failed()),
        handles.len(),
        "could not delete some handled messages; they will be redelivered",
        "could not delete handled messages; they will be redelivered",
    );
}
