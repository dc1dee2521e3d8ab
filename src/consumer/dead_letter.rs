//! Moving an SQS message to its queue's dead-letter queue at once, for
//! [`Decision::DeadLetter`](crate::delivery::Decision::DeadLetter): an
//! unreadable envelope or one out of attempts, which no retry can help. Both
//! SQS transports (the poller and Lambda) use it; the dead-letter queue is the
//! one the source queue's redrive policy names, found once per queue.

use std::collections::HashMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::{Mutex, OnceCell};

use crate::contract::is_fifo;

/// Finds and writes to dead-letter queues.
#[derive(Debug, Default)]
pub struct DeadLetterQueues {
    /// The SQS client: given, or built from the environment on first use (so
    /// a Lambda cold start does not pay for it).
    sqs: OnceCell<Client>,
    /// Source queue URL → its dead-letter queue URL (`None`: it has none).
    found: Mutex<HashMap<String, Option<String>>>,
    /// Queue ARN → its URL, once found.
    urls: Mutex<HashMap<String, String>>,
}

impl DeadLetterQueues {
    /// Uses `sqs` for every call.
    pub fn with_client(sqs: Client) -> Self {
        Self {
            sqs: OnceCell::new_with(Some(sqs)),
            found: Mutex::default(),
            urls: Mutex::default(),
        }
    }

    /// The SQS client.
    pub async fn client(&self) -> &Client {
        self.sqs
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await;
                Client::new(&config)
            })
            .await
    }

    /// The queue URL for an SQS ARN (`arn:aws:sqs:<region>:<account>:<name>`),
    /// found once per ARN.
    pub async fn queue_url_for_arn(&self, arn: &str) -> Option<String> {
        if let Some(url) = self.urls.lock().await.get(arn) {
            return Some(url.clone());
        }
        let url = self.find_url(arn).await?;
        self.urls.lock().await.insert(arn.to_owned(), url.clone());
        Some(url)
    }

    async fn find_url(&self, arn: &str) -> Option<String> {
        let mut parts = arn.rsplitn(3, ':');
        let name = parts.next()?;
        let account = parts.next()?;
        self.client()
            .await
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| tracing::warn!(error.message = %crate::aws::describe(&e), "cannot find the queue's URL"))
            .ok()?
            .queue_url
    }

    /// The dead-letter queue of `queue_url`, from its redrive policy (cached).
    pub async fn for_queue(&self, queue_url: &str) -> Option<String> {
        if let Some(found) = self.found.lock().await.get(queue_url) {
            return found.clone();
        }
        let found = self.find(queue_url).await;
        self.found
            .lock()
            .await
            .insert(queue_url.to_owned(), found.clone());
        found
    }

    async fn find(&self, queue_url: &str) -> Option<String> {
        let attrs = self
            .client()
            .await
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| tracing::warn!(error.message = %crate::aws::describe(&e), "cannot read the queue's redrive policy"))
            .ok()?;
        let policy = attrs
            .attributes()?
            .get(&QueueAttributeName::RedrivePolicy)?;
        let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
        let arn = policy.get("deadLetterTargetArn")?.as_str()?.to_owned();
        self.queue_url_for_arn(&arn).await
    }

    /// Writes `body` to `queue_url`'s dead-letter queue. `Err` when there is
    /// none or the write failed: the message then stays where it is.
    pub async fn send(
        &self,
        queue_url: &str,
        body: &str,
        message_id: &str,
    ) -> Result<(), DeadLetterError> {
        let Some(dlq) = self.for_queue(queue_url).await else {
            return Err(DeadLetterError::NoDeadLetterQueue);
        };
        let mut send = self
            .client()
            .await
            .send_message()
            .queue_url(&dlq)
            .message_body(body);
        if is_fifo(&dlq) {
            send = send
                .message_group_id("dead-letters")
                .message_deduplication_id(message_id);
        }
        send.send()
            .await
            .map(|_| ())
            .map_err(|e| DeadLetterError::Send(Box::new(e)))
    }
}

/// Why a message could not be moved to its dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The source queue has no redrive policy, or its dead-letter queue
    /// cannot be found.
    #[error("the queue has no dead-letter queue (no redrive policy)")]
    NoDeadLetterQueue,
    /// `SendMessage` to the dead-letter queue failed.
    #[error("cannot send the message to the dead-letter queue")]
    Send(#[source] Box<aws_sdk_sqs::error::SdkError<SendMessageError>>),
}

impl DeadLetterError {
    /// The error as one short line for the log: the SDK's cause as
    /// [`crate::aws::describe`] words it.
    pub fn describe(&self) -> String {
        match self {
            Self::NoDeadLetterQueue => self.to_string(),
            Self::Send(e) => format!("{self}: {}", crate::aws::describe(e)),
        }
    }
}
