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
