//! The AWS SDK configuration Herald's request-path clients share (SNS
//! publishing, the DynamoDB status store): the standard environment
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials chain) with the timeouts
//! of [`AwsTimeouts`].

use std::time::Duration;

use crate::config::AwsTimeouts;

/// Loads the configuration; nothing is called until a client is used.
pub async fn sdk_config(limits: AwsTimeouts) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(limits.attempt)
        .operation_timeout(limits.operation)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// An AWS SDK error as one short line for logs and error chains: the
/// service's error code and message, or the kind of failure with its
/// innermost cause, never the SDK's debug form or raw response (kilobytes of
/// headers and bodies per line).
pub fn describe<E, R>(error: &aws_sdk_sns::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sns::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_sns::error::SdkError;
    match error {
        SdkError::ServiceError(e) => format!(
            "{}: {}",
            e.err().code().unwrap_or("unknown error code"),
            e.err().message().unwrap_or("no message")
        ),
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => format!("cannot reach AWS: {}", innermost(error)),
        SdkError::ConstructionFailure(_) => {
            format!("the request could not be built: {}", innermost(error))
        }
        _ => format!("unreadable response: {}", innermost(error)),
    }
}

/// The last cause in an error's chain, at most 200 characters.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().chars().take(200).collect()
}
