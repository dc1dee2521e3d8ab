//! Keeps the media people send (the embedded default): each inbound
//! WhatsApp message with an image, video, audio, document or sticker left a
//! job ([`super::downloads`]); this task downloads its media with the
//! receiving number's token (`GET /{media-id}`, then the URL it gives),
//! reads it to disk as it arrives, keeps it for each of the message's
//! tenants like an upload, and settles the job, which queues the
//! `message.inbound` event with `media`. The webhook's `200` never waits for
//! it. Failures are retried with the delivery backoff; past
//! `DELIVERY_MAX_ATTEMPTS` the event goes with `media.error` (Meta keeps
//! inbound media for 7 days).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use super::EmbeddedQueue;
use super::downloads::{Job, Outcome};
use crate::channels::whatsapp::read_receipts::ReadReceipts;
use crate::delivery::{FailureClass, RetryPolicy};
use crate::media::MediaStore;
use crate::media::inbound::{Failure, keep_for_tenants};

/// How long a job taken stays out of reach: longer than a download can take.
const HOLD: Duration = Duration::from_secs(600);
/// Downloads at once.
const CONCURRENCY: usize = 4;
/// How often due retries are looked for when nothing wakes the task.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Downloads and keeps inbound media.
#[derive(Clone)]
pub struct Downloader {
    queue: EmbeddedQueue,
    store: Arc<dyn MediaStore>,
    numbers: Arc<ReadReceipts>,
    retry: RetryPolicy,
    max_attempts: u32,
}

impl Downloader {
    /// Downloads with `numbers`' tokens into `store`, retrying by `retry` up
    /// to `max_attempts`.
    pub fn new(
        queue: EmbeddedQueue,
        store: Arc<dyn MediaStore>,
        numbers: Arc<ReadReceipts>,
        retry: RetryPolicy,
        max_attempts: u32,
    ) -> Self {
        Self {
            queue,
            store,
            numbers,
            retry,
            max_attempts: max_attempts.max(1),
        }
    }

    /// Works until `stop` completes, then finishes the downloads in flight.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tasks: JoinSet<()> = JoinSet::new();
        loop {
            let free = CONCURRENCY - tasks.len();
            if free > 0 {
                match self
                    .queue
                    .lease_downloads(HOLD.as_millis() as i64, free)
                    .await
                {
                    Ok(jobs) => {
                        for job in jobs {
                            let this = self.clone();
                            tasks.spawn(async move { this.work(job).await });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "cannot read the media downloads; they wait")
                    }
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = self.queue.downloads_queued.notified(), if tasks.len() < CONCURRENCY => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn work(&self, job: Job) {
        let id = job.inbound.provider_message_id.clone();
        let outcome = match self.keep(&job).await {
            Ok(media) => Outcome::Kept(media),
            Err(Failure::Final(error)) => {
                tracing::error!(provider_message_id = %id, error.message = %error,
                    "inbound media refused: its event goes with media.error");
                Outcome::GaveUp { error }
            }
            Err(Failure::Again(error)) if job.attempts >= self.max_attempts => {
                tracing::error!(provider_message_id = %id, attempts = job.attempts, error.message = %error,
                    "inbound media given up: its event goes with media.error");
                Outcome::GaveUp { error }
            }
            Err(Failure::Again(error)) => {
                let after = self
                    .retry
                    .delay(FailureClass::Retryable, job.attempts, None);
                tracing::warn!(provider_message_id = %id, attempt = job.attempts, error.message = %error,
                    retry_in_ms = after.as_millis() as u64, "inbound media not kept yet; will retry");
                Outcome::Retry {
                    due_ms: crate::clock::now_ms() + after.as_millis() as i64,
                    error,
                }
            }
        };
        if let Err(e) = self.queue.settle_download(id, outcome).await {
            tracing::error!(error.message = %e, "could not record a media download; it is tried again");
        }
    }

    /// Downloads the job's media and keeps it for each tenant: the event's
    /// `media`.
    async fn keep(&self, job: &Job) -> Result<Value, Failure> {
        let inbound = &job.inbound;
        let again = |why: &str| Failure::Again(why.to_owned());
        let media_id = inbound
            .media_id()
            .ok_or_else(|| again("no media in the message"))?;
        let number = inbound.to.as_deref().unwrap_or_default();
        let client = self
            .numbers
            .client(number)
            .ok_or_else(|| again("no WhatsApp credentials for the number that received it"))?;
        let download = client
            .download(media_id)
            .await
            .map_err(|e| Failure::Again(crate::telemetry::chain(&e)))?;
        let filename = inbound
            .message
            .pointer("/document/filename")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let body = crate::media::inbound::body_of(download.body);
        let store = self.store.as_ref();
        keep_for_tenants(store, &inbound.tenants, &download.mime_type, filename, body).await
    }
}
