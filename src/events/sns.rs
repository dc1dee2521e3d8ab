//! Events published to `EVENTS_TOPIC_ARN` (SNS mode), with the message
//! attributes `type`, `channel` and `status` so subscribers filter with a
//! subscription filter policy.

use aws_sdk_sns::operation::publish::PublishError;
use aws_sdk_sns::types::MessageAttributeValue;

use crate::contract::is_fifo;
use crate::status::events::Event;

/// Publishes events to one topic.
#[derive(Debug, Clone)]
pub struct SnsEvents {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsEvents {
    /// Events to `topic_arn` through `client`.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: &str) -> Self {
        Self {
            client,
            topic_arn: topic_arn.to_owned(),
        }
    }

    /// Publishes one event; `Err` says why (the caller does not acknowledge
    /// what caused it, so it comes again).
    pub async fn publish(&self, event: &Event) -> Result<(), EventPublishError> {
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type and value are set")
        };
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(&event.body)
            .message_attributes("type", attribute(event.kind))
            .message_attributes("channel", attribute(&event.channel));
        if let Some(status) = event.status {
            request = request.message_attributes("status", attribute(status));
        }
        if is_fifo(&self.topic_arn) {
            // One group per channel keeps each channel's events in order;
            // the event id deduplicates a retried publish.
            request = request
                .message_group_id(&event.channel)
                .message_deduplication_id(&event.id);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| EventPublishError(Box::new(e)))
    }
}

/// An event SNS did not take (throttled, unreachable, a missing topic or
/// permission); the SDK's error is the source.
#[derive(Debug, thiserror::Error)]
#[error("cannot publish the event")]
pub struct EventPublishError(#[source] Box<aws_sdk_sns::error::SdkError<PublishError>>);
