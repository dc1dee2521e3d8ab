//! The embedded default's event sender: drains the SQLite outbox to
//! `EVENTS_WEBHOOK_URL`, each event POSTed with Standard Webhooks headers
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! At least once: an event leaves the outbox only when the receiver answered
//! 2xx. A non-2xx answer, a timeout or a refused connection is retried with
//! the delivery backoff (`DELIVERY_RETRY_BASE_MS` doubling up to
//! `DELIVERY_RETRY_MAX_MS`); after `DELIVERY_MAX_ATTEMPTS` the event moves to
//! `event_dead_letters`. A crash while an event is out leaves it in the
//! outbox, due again after [`HOLD`]; the receiver deduplicates on
//! `webhook-id`, which stays the same across attempts.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;

use super::EmbeddedQueue;
use super::outbox::{EventOutcome, OutboxEvent};
use crate::clock::now_ms;
use crate::config::EventsWebhookConfig;
use crate::delivery::{FailureClass, RetryPolicy};

/// How long an event taken for sending stays out of the outbox's reach: longer
/// than one POST can take, so it is never sent twice at once.
const HOLD: Duration = Duration::from_secs(60);
/// Longest one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Events POSTed at once.
const CONCURRENCY: usize = 16;
/// How often the outbox is looked at for retries that came due, when nothing wakes the sender.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Sends the outbox's events to the application.
#[derive(Debug, Clone)]
pub struct EventSender {
    queue: EmbeddedQueue,
    client: reqwest::Client,
    config: EventsWebhookConfig,
    retry: RetryPolicy,
    max_attempts: u32,
}

impl EventSender {
    /// A sender to `config.url`, retrying by `retry` up to `max_attempts`.
    pub fn new(
        queue: EmbeddedQueue,
        config: EventsWebhookConfig,
        retry: RetryPolicy,
        max_attempts: u32,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            queue,
            client,
            config,
            retry,
            max_attempts: max_attempts.max(1),
        })
    }

    /// Sends until `stop` completes, then finishes the POSTs in flight.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut failing = false;
        loop {
            let free = CONCURRENCY - tasks.len();
            if free > 0 {
                match self.queue.lease_events(HOLD.as_millis() as i64, free).await {
                    Ok(events) => {
                        failing = false;
                        for event in events {
                            let this = self.clone();
                            tasks.spawn(async move { this.send(event).await });
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::error!(error.message = %e, "cannot read the event outbox; events wait");
                        }
                        failing = true;
                    }
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = self.queue.events_queued.notified(), if tasks.len() < CONCURRENCY => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// POSTs one event and records the outcome.
    async fn send(&self, event: OutboxEvent) {
        let outcome = match self
            .post(&event)
            .await
            .map_err(|e| crate::telemetry::chain(&e))
        {
            Ok(()) => EventOutcome::Delivered,
            Err(error) if event.attempts >= self.max_attempts => {
                tracing::error!(event_id = %event.id, attempts = event.attempts, error.message = %error,
                    "event given up: moved to event_dead_letters");
                EventOutcome::DeadLetter { reason: error }
            }
            Err(error) => {
                let after = self
                    .retry
                    .delay(FailureClass::Retryable, event.attempts, None);
                tracing::warn!(event_id = %event.id, attempt = event.attempts, retry_in_ms = after.as_millis() as u64,
                    error.message = %error, "event not accepted by EVENTS_WEBHOOK_URL; will retry");
                EventOutcome::Retry {
                    due_ms: now_ms() + after.as_millis() as i64,
                    error,
                }
            }
        };
        if let Err(e) = self.queue.settle_event(event.id.clone(), outcome).await {
            // Still in the outbox: it comes due again after the hold.
            tracing::error!(event_id = %event.id, error.message = %e, "could not record an event's outcome; it will be sent again");
        }
    }

    async fn post(&self, event: &OutboxEvent) -> Result<(), PostError> {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self
            .config
            .secret
            .sign(&event.id, timestamp, event.body.as_bytes());
        let response = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    PostError::Timeout(e.without_url())
                } else {
                    PostError::Unreachable(e.without_url())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Refused(status))
        }
    }
}

/// Why the receiver did not take an event. Its text (with the causes) is
/// what the outbox records as the attempt's error.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// No answer within the client's timeout.
    #[error("the receiver did not answer in time")]
    Timeout(#[source] reqwest::Error),
    /// The request could not be sent (DNS, connection, TLS).
    #[error("cannot reach the receiver")]
    Unreachable(#[source] reqwest::Error),
    /// The receiver answered, but not with a 2xx.
    #[error("the receiver answered {0}")]
    Refused(reqwest::StatusCode),
}
