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
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{BoxFuture, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher};
use crate::contract::Envelope;

pub mod batcher;
pub mod client;
pub mod errors;

use batcher::{Entry, MAX_QUEUED};
pub use client::{BatchClient, LeanClient};
pub(crate) use errors::{classify_code, classify_sdk_error};

/// How long a health result is reused, so that load balancers polling `/health`
/// do not turn into a stream of `GetTopicAttributes` calls.
const HEALTH_CACHE: Duration = Duration::from_secs(5);

/// Publishes to one SNS topic with a client built once at startup.
#[derive(Clone)]
pub struct SnsPublisher {
    client: Client,
    topic_arn: Arc<str>,
    fifo: bool,
    entries: mpsc::Sender<Entry>,
    health: Arc<Mutex<Option<(Instant, HealthCheck)>>>,
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
        let fifo = topic_arn.ends_with(".fifo");
        let topic_arn: Arc<str> = topic_arn.into();
        let (entries, receiver) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(batcher::run(
            batch_client,
            topic_arn.clone(),
            fifo,
            linger,
            receiver,
            entries.downgrade(),
        ));
        Self {
            client,
            topic_arn,
            fifo,
            entries,
            health: Arc::new(Mutex::new(None)),
        }
    }

    /// A publisher sending batches through aws-sdk-sns.
    pub fn with_sdk(client: Client, topic_arn: &str, linger: Duration) -> Self {
        Self::new(client.clone(), BatchClient::Sdk(client), topic_arn, linger)
    }

    /// Builds the publisher from the standard AWS environment (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, credentials chain), with timeouts short enough that a
    /// stuck call becomes a 503 rather than a hung request. `lean` selects our own
    /// `PublishBatch` client over the SDK's (`SNS_CLIENT=lean`).
    pub async fn from_env(topic_arn: &str, linger: Duration, lean: bool) -> Result<Self, String> {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(3))
            .operation_timeout(Duration::from_secs(8))
            .build();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        let client = Client::new(&config);
        let batch_client = if lean {
            BatchClient::Lean(LeanClient::from_sdk_config(&config).ok_or_else(|| {
                "SNS_CLIENT=lean needs AWS_REGION and a credentials provider".to_owned()
            })?)
        } else {
            BatchClient::Sdk(client.clone())
        };
        Ok(Self::new(client, batch_client, topic_arn, linger))
    }

    /// The topic this publisher writes to.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    async fn probe_topic(&self) -> HealthCheck {
        match self
            .client
            .get_topic_attributes()
            .topic_arn(self.topic_arn.as_ref())
            .send()
            .await
        {
            Ok(_) => HealthCheck {
                name: "sns",
                healthy: true,
                detail: json!({ "topic": "reachable" }),
            },
            Err(e) => {
                let error = classify_sdk_error(&e, &self.topic_arn);
                HealthCheck {
                    name: "sns",
                    healthy: false,
                    detail: json!({ "topic": "unreachable", "reason": error.message }),
                }
            }
        }
    }
}

impl Publisher for SnsPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            let (reply, outcome) = oneshot::channel();
            let entry = Entry::new(envelope, self.fifo, reply);
            let stopped =
                || PublishError::new(PublishErrorKind::Transient, "the SNS batcher has stopped");
            self.entries.send(entry).await.map_err(|_| stopped())?;
            outcome.await.map_err(|_| stopped())?
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async move {
            let mut cached = self.health.lock().await;
            if let Some((at, check)) = cached.as_ref()
                && at.elapsed() < HEALTH_CACHE
            {
                return check.clone();
            }
            let check = self.probe_topic().await;
            *cached = Some((Instant::now(), check.clone()));
            check
        })
    }
}
