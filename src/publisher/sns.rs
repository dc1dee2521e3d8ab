//! Publishing envelopes to an AWS SNS topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sns::Client;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::json;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::{BoxFuture, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher};
use crate::contract::Envelope;

/// How long a health result is reused, so that load balancers polling `/health`
/// do not turn into a stream of `GetTopicAttributes` calls.
const HEALTH_CACHE: Duration = Duration::from_secs(5);

/// Publishes to one SNS topic with a client built once at startup.
#[derive(Clone)]
pub struct SnsPublisher {
    client: Client,
    topic_arn: Arc<str>,
    fifo: bool,
    health: Arc<Mutex<Option<(Instant, HealthCheck)>>>,
}

impl SnsPublisher {
    /// A publisher for `topic_arn`. FIFO fields are set when the ARN ends in `.fifo`.
    pub fn new(client: Client, topic_arn: &str) -> Self {
        Self {
            client,
            fifo: topic_arn.ends_with(".fifo"),
            topic_arn: topic_arn.into(),
            health: Arc::new(Mutex::new(None)),
        }
    }

    /// Builds the SNS client from the standard AWS environment (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, credentials chain), with timeouts short enough that a
    /// stuck call becomes a 503 rather than a hung request.
    pub async fn client_from_env() -> Client {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(3))
            .operation_timeout(Duration::from_secs(8))
            .build();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        Client::new(&config)
    }

    /// The topic this publisher writes to.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    async fn publish_one(&self, envelope: &Envelope) -> Result<PublishReceipt, PublishError> {
        let mut request = self
            .client
            .publish()
            .topic_arn(self.topic_arn.as_ref())
            .message(envelope.to_json())
            .message_attributes("channel", string_attribute(envelope.channel.as_str()))
            .message_attributes("type", string_attribute(envelope.message_type()));
        if self.fifo {
            // One group per recipient keeps each person's messages in order while
            // different recipients proceed in parallel.
            request = request
                .message_group_id(envelope.to.as_str())
                .message_deduplication_id(envelope.id.to_string());
        }
        let output = request
            .send()
            .await
            .map_err(|e| classify_sdk_error(&e, &self.topic_arn))?;
        Ok(PublishReceipt {
            queue_message_id: output.message_id().map(str::to_owned),
        })
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

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set, the only required field")
}

impl Publisher for SnsPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        let span = tracing::info_span!("sns.publish", sns.message_id = tracing::field::Empty);
        Box::pin(
            async move {
                let receipt = self.publish_one(envelope).await?;
                if let Some(id) = &receipt.queue_message_id {
                    tracing::Span::current().record("sns.message_id", id.as_str());
                }
                Ok(receipt)
            }
            .instrument(span),
        )
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

/// Maps an SNS error code to what it means for the client.
pub(crate) fn classify_code(code: &str) -> PublishErrorKind {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "Throttled"
        | "RequestThrottled"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => PublishErrorKind::Throttled,
        "NotFound"
        | "NotFoundException"
        | "AuthorizationError"
        | "AccessDenied"
        | "AccessDeniedException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidSecurity"
        | "OptInRequired"
        | "InvalidParameter"
        | "InvalidParameterValue" => PublishErrorKind::Misconfigured,
        kms if kms.starts_with("KMS") => PublishErrorKind::Misconfigured,
        _ => PublishErrorKind::Transient,
    }
}

/// What an operator should do about a misconfiguration code.
pub(crate) fn remedy(code: &str, topic_arn: &str) -> String {
    match code {
        "NotFound" | "NotFoundException" => {
            format!("SNS topic {topic_arn} does not exist: check SNS_TOPIC_ARN and AWS_REGION")
        }
        "InvalidParameter" | "InvalidParameterValue" => {
            format!(
                "SNS refused the publish request for {topic_arn} as invalid: check that the topic type (standard or .fifo) matches its ARN"
            )
        }
        kms if kms.starts_with("KMS") => {
            format!(
                "SNS cannot use the topic's KMS key ({code}): grant kms:GenerateDataKey and kms:Decrypt to the gateway's role"
            )
        }
        _ => format!(
            "not allowed to publish to {topic_arn} ({code}): check the AWS credentials and the sns:Publish permission"
        ),
    }
}

/// Turns an SDK error into a [`PublishError`], keeping the cause for the log.
pub(crate) fn classify_sdk_error<E, R>(error: &SdkError<E, R>, topic_arn: &str) -> PublishError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, message) = match error {
        SdkError::ServiceError(_) => {
            let code = error.code().unwrap_or("Unknown");
            match classify_code(code) {
                PublishErrorKind::Misconfigured => {
                    (PublishErrorKind::Misconfigured, remedy(code, topic_arn))
                }
                kind => (kind, format!("SNS answered {code}")),
            }
        }
        SdkError::TimeoutError(_) => (
            PublishErrorKind::Transient,
            "SNS did not answer in time".to_owned(),
        ),
        SdkError::DispatchFailure(f) if f.is_io() || f.is_timeout() => (
            PublishErrorKind::Transient,
            "could not reach SNS (connection failed)".to_owned(),
        ),
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => (
            PublishErrorKind::Misconfigured,
            "could not build or sign the SNS request: check the AWS credentials and AWS_REGION"
                .to_owned(),
        ),
        _ => (
            PublishErrorKind::Transient,
            "SNS returned an unreadable response".to_owned(),
        ),
    };
    let cause = StringError(DisplayErrorContext(error).to_string());
    PublishError::new(kind, message).with_source(cause)
}

/// An error cause kept as text (the SDK's context is rendered once, with all causes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct StringError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_error_codes_are_classified() {
        assert_eq!(classify_code("Throttling"), PublishErrorKind::Throttled);
        assert_eq!(
            classify_code("ThrottlingException"),
            PublishErrorKind::Throttled
        );
        assert_eq!(classify_code("NotFound"), PublishErrorKind::Misconfigured);
        assert_eq!(
            classify_code("AuthorizationError"),
            PublishErrorKind::Misconfigured
        );
        assert_eq!(
            classify_code("KMSDisabled"),
            PublishErrorKind::Misconfigured
        );
        assert_eq!(classify_code("InternalError"), PublishErrorKind::Transient);
        assert_eq!(classify_code("SomethingNew"), PublishErrorKind::Transient);
    }

    #[test]
    fn remedies_name_what_to_fix() {
        assert!(remedy("NotFound", "arn:t").contains("SNS_TOPIC_ARN"));
        assert!(remedy("AuthorizationError", "arn:t").contains("sns:Publish"));
        assert!(remedy("KMSAccessDenied", "arn:t").contains("kms:"));
    }
}
