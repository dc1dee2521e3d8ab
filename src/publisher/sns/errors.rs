//! What SNS errors mean for the client: throttled, transient, or an operator's problem.

use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};

use crate::publisher::{PublishError, PublishErrorKind};

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

/// What a failed *call* (not one entry of a batch) means. SNS's server-side
/// failures answer without saying whether the messages were stored, so those
/// are an unknown outcome, never "nothing was published".
pub(crate) fn classify_call_code(code: &str) -> PublishErrorKind {
    match code {
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" => {
            PublishErrorKind::OutcomeUnknown
        }
        other => classify_code(other),
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
            let code = error.code().unwrap_or("InternalError");
            match classify_call_code(code) {
                PublishErrorKind::Misconfigured => {
                    (PublishErrorKind::Misconfigured, remedy(code, topic_arn))
                }
                kind => (kind, format!("SNS answered {code}")),
            }
        }
        // The request may have reached SNS and been processed: unknown outcome.
        SdkError::TimeoutError(_) => (
            PublishErrorKind::OutcomeUnknown,
            "SNS did not answer in time".to_owned(),
        ),
        SdkError::DispatchFailure(_) if connection_never_made(error) => (
            PublishErrorKind::Transient,
            "could not connect to SNS".to_owned(),
        ),
        SdkError::DispatchFailure(f) if f.is_io() || f.is_timeout() => (
            PublishErrorKind::OutcomeUnknown,
            "the connection to SNS failed after the request was sent".to_owned(),
        ),
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => (
            PublishErrorKind::Misconfigured,
            "could not build or sign the SNS request: check the AWS credentials and AWS_REGION"
                .to_owned(),
        ),
        _ => (
            PublishErrorKind::OutcomeUnknown,
            "SNS returned an unreadable response".to_owned(),
        ),
    };
    let cause = StringError(crate::aws::describe(error));
    PublishError::new(kind, message).with_source(cause)
}

/// True when the error's causes show a connection that was never made
/// (refused, unreachable): then nothing was sent, a definite failure.
fn connection_never_made(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::HostUnreachable
            )
        {
            return true;
        }
        cause = e.source();
    }
    false
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
    fn a_failed_call_with_a_server_error_has_an_unknown_outcome() {
        assert_eq!(
            classify_call_code("InternalError"),
            PublishErrorKind::OutcomeUnknown
        );
        assert_eq!(
            classify_call_code("Throttling"),
            PublishErrorKind::Throttled
        );
        assert_eq!(
            classify_call_code("NotFound"),
            PublishErrorKind::Misconfigured
        );
    }

    #[test]
    fn remedies_name_what_to_fix() {
        assert!(remedy("NotFound", "arn:t").contains("SNS_TOPIC_ARN"));
        assert!(remedy("AuthorizationError", "arn:t").contains("sns:Publish"));
        assert!(remedy("KMSAccessDenied", "arn:t").contains("kms:"));
    }
}
