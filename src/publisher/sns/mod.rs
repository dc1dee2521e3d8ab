//! Publishing envelopes to an AWS SNS topic.
//!
//! Concurrent publishes are coalesced into `PublishBatch` calls (see
//! [`batcher`]): the SDK call, not the HTTP server, is the gateway's dominant
//! cost, and one call for ten messages costs about what one call for one does.
//! Each request still waits for its own entry's outcome, so a 202 is only ever
//! sent for an entry SNS reported as published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sns::Client;
use serde_json::json;
use tokio::sync::Mutex;

use super::{BoxFuture, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher};
use crate::contract::Envelope;

pub mod batcher;
pub mod client;
pub mod errors;

use batcher::Admitter;
pub use batcher::BatcherLimits;
pub use client::{BatchClient, LeanClient};
pub(crate) use errors::{classify_call_code, classify_code, classify_sdk_error};

/// How long a health result is reused, so that load balancers polling `/health`
/// do not turn into a stream of `GetTopicAttributes` calls.
const HEALTH_CACHE: Duration = Duration::from_secs(5);
/// Entries waiting this long with no `PublishBatch` call coming back make
/// `/health` fail: longer than the SDK's whole operation timeout (8 s).
const STALL_AFTER: Duration = Duration::from_secs(20);

/// Why [`SnsPublisher::from_env`] cannot build a publisher.
#[derive(Debug, thiserror::Error)]
pub enum SnsSetupError {
    /// `SNS_TOPIC_ARN` names a topic that cannot be used (the check's
    /// error says why, naming the variable).
    #[error(transparent)]
    Topic(#[from] crate::config::ConfigError),
    /// `SNS_CLIENT=lean` without the region or credentials it signs with.
    #[error("SNS_CLIENT=lean needs AWS_REGION and a credentials provider")]
    LeanClientUnconfigured,
}

/// Publishes to one SNS topic with a client built once at startup.
#[derive(Clone)]
pub struct SnsPublisher {
    client: Client,
    topic_arn: Arc<str>,
    batcher: Admitter,
    health: Arc<Mutex<Option<(Instant, bool)>>>,
}

impl SnsPublisher {
    /// A publisher for `topic_arn` that sends batches with `batch_client` and
    /// waits up to `linger` for other publishes to share a batch (zero: send
    /// whatever is waiting at once). FIFO fields are set when the ARN ends in
    /// `.fifo`. Must be called inside a Tokio runtime: it starts the batching task.
    pub fn new(
        client: Client,
        batch_client: BatchClient,
        topic_arn: &str,
        linger: Duration,
    ) -> Self {
        Self::with_limits(
            client,
            batch_client,
            topic_arn,
            linger,
            BatcherLimits::default(),
        )
    }

    /// As [`SnsPublisher::new`], with the batcher's limits set (tests shrink them).
    pub fn with_limits(
        client: Client,
        batch_client: BatchClient,
        topic_arn: &str,
        linger: Duration,
        limits: BatcherLimits,
    ) -> Self {
        let fifo = crate::contract::is_fifo(topic_arn);
        let topic_arn: Arc<str> = topic_arn.into();
        let batcher = batcher::start(batch_client, topic_arn.clone(), fifo, linger, limits);
        Self {
            client,
            topic_arn,
            batcher,
            health: Arc::new(Mutex::new(None)),
        }
    }

    /// A publisher sending batches through aws-sdk-sns.
    pub fn with_sdk(client: Client, topic_arn: &str, linger: Duration) -> Self {
        Self::new(client.clone(), BatchClient::Sdk(client), topic_arn, linger)
    }

    /// Builds the publisher from the standard AWS environment (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, credentials chain), with `timeouts` short enough that
    /// a stuck call becomes a 503 rather than a hung request. `lean` selects our
    /// own `PublishBatch` client over the SDK's (`SNS_CLIENT=lean`). The topic
    /// is checked first ([`crate::preflight::check_topic`]): a topic that does
    /// not exist is an error naming `SNS_TOPIC_ARN`.
    pub async fn from_env(
        topic_arn: &str,
        linger: Duration,
        lean: bool,
        timeouts: crate::config::AwsTimeouts,
    ) -> Result<Self, SnsSetupError> {
        let config = crate::aws::sdk_config(timeouts).await;
        let client = Client::new(&config);
        crate::preflight::check_topic(&client, "SNS_TOPIC_ARN", topic_arn).await?;
        let batch_client = if lean {
            BatchClient::Lean(
                LeanClient::from_sdk_config(&config)
                    .ok_or(SnsSetupError::LeanClientUnconfigured)?,
            )
        } else {
            // BatchClient retries itself, so that it knows whether any attempt's
            // outcome was unknown; the SDK's own retries would hide that.
            let publish_config = aws_sdk_sns::config::Builder::from(&config)
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .build();
            BatchClient::Sdk(Client::from_conf(publish_config))
        };
        Ok(Self::new(client, batch_client, topic_arn, linger))
    }

    /// The topic this publisher writes to.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// Whether the topic answers `GetTopicAttributes`. What went wrong (which
    /// names the topic ARN, hence the AWS account) goes to the log, not to
    /// `/health`'s unauthenticated callers.
    async fn probe_topic(&self) -> bool {
        match self
            .client
            .get_topic_attributes()
            .topic_arn(self.topic_arn.as_ref())
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) => {
                let error = classify_sdk_error(&e, &self.topic_arn);
                tracing::warn!(error.message = %error.message, error.cause = error.cause_chain().as_deref(), "health check: the SNS topic is unreachable");
                false
            }
        }
    }

    async fn topic_reachable(&self) -> bool {
        let mut cached = self.health.lock().await;
        if let Some((at, reachable)) = *cached
            && at.elapsed() < HEALTH_CACHE
        {
            return reachable;
        }
        let reachable = self.probe_topic().await;
        *cached = Some((Instant::now(), reachable));
        reachable
    }
}

impl Publisher for SnsPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            let outcome = self.batcher.submit(envelope)?;
            // The batch task ended without answering (it panicked, or the
            // runtime is shutting down): the entry may or may not have been sent.
            outcome.await.unwrap_or_else(|_| {
                Err(PublishError::new(
                    PublishErrorKind::OutcomeUnknown,
                    "the SNS batcher stopped before answering",
                ))
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async move {
            let progress = self.batcher.progress();
            let stalled = progress.stalled_for();
            if stalled >= STALL_AFTER {
                tracing::error!(
                    waiting = progress.waiting(),
                    stalled_secs = stalled.as_secs(),
                    "health check: the SNS batcher has made no progress"
                );
                return HealthCheck {
                    name: "sns",
                    healthy: false,
                    detail: json!({ "reason": "publisher-stalled" }),
                };
            }
            if self.topic_reachable().await {
                HealthCheck {
                    name: "sns",
                    healthy: true,
                    detail: json!({ "topic": "reachable", "waiting": progress.waiting() }),
                }
            } else {
                HealthCheck {
                    name: "sns",
                    healthy: false,
                    detail: json!({ "reason": "topic-unreachable" }),
                }
            }
        })
    }
}
