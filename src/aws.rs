//! The AWS SDK configuration Herald's request-path clients share (SNS
//! publishing, the DynamoDB status store): the standard environment
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials chain) with timeouts short
//! enough that a stuck call becomes a 503 or a retried write, not a hung request.

use std::time::Duration;

/// Loads the configuration; nothing is called until a client is used.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}
