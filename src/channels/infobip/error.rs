//! Everything that can go wrong sending through Infobip, and what each failure
//! means for the message, in the classes every channel shares: PENDING or
//! DELIVERED → submitted; REJECTED, UNDELIVERABLE or EXPIRED → permanent,
//! account problems → alert; 429 → pace; 5xx, timeouts, connections → retry;
//! 401/403/404 → alert; other 4xx → permanent (`docs/providers/infobip.md`).

use std::time::Duration;

use super::types::{ApiErrorBody, InfobipStatus};
use crate::channels::provider::{FailureClass, ProviderError};

/// Infobip's status groups: a status's `groupId` (`docs/providers/infobip.md`).
pub mod group {
    /// Processed, handset delivery not confirmed yet.
    pub const PENDING: i64 = 1;
    /// Could not be delivered.
    pub const UNDELIVERABLE: i64 = 2;
    /// Delivered (to the operator, or to the handset).
    pub const DELIVERED: i64 = 3;
    /// Expired before delivery was confirmed.
    pub const EXPIRED: i64 = 4;
    /// Rejected by Infobip or the operator before sending.
    pub const REJECTED: i64 = 5;
}

/// A failed call to Infobip.
#[derive(Debug, thiserror::Error)]
pub enum InfobipError {
    /// No response within `INFOBIP_TIMEOUT_MS` after the request was sent.
    #[error("Infobip did not answer in time; it may have accepted the message")]
    Timeout,
    /// The connection could not be made: nothing was sent.
    #[error("could not connect to Infobip: {0}")]
    Connect(#[source] reqwest::Error),
    /// The connection broke after the request was sent.
    #[error("the connection to Infobip broke after sending; it may have accepted the message: {0}")]
    Interrupted(#[source] reqwest::Error),
    /// Infobip answered, and the message's status says it will not be sent.
    #[error("Infobip refused the message: {} ({})", .0.name, .0.description)]
    Refused(InfobipStatus),
    /// An HTTP error with Infobip's error body.
    #[error("Infobip API error (HTTP {status}): {}", .body.summary())]
    Api {
        /// HTTP status.
        status: u16,
        /// The parsed body.
        body: ApiErrorBody,
        /// The `Retry-After` header, when sent.
        retry_after: Option<Duration>,
    },
    /// A response that could not be understood.
    #[error("unexpected Infobip response (HTTP {status}): {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The body, cut to 1 KiB.
        body: String,
        /// The `Retry-After` header, when sent.
        retry_after: Option<Duration>,
    },
}

/// True for statuses that are the account's problem, not the message's:
/// every message would fail alike until an operator acts.
fn is_account_problem(status: &InfobipStatus) -> bool {
    status.name.contains("NOT_ENOUGH_CREDITS") || status.name.contains("ACCOUNT")
}

impl InfobipError {
    /// What this failure means for the message.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Connect(_) => FailureClass::Retryable,
            Self::Timeout | Self::Interrupted(_) => FailureClass::Unconfirmed,
            Self::Refused(status) if is_account_problem(status) => FailureClass::Configuration,
            Self::Refused(_) => FailureClass::Permanent,
            Self::Unexpected { status, .. } if (200..300).contains(status) => {
                FailureClass::Unconfirmed
            }
            Self::Api { status, .. } | Self::Unexpected { status, .. } => {
                FailureClass::of_http_status(*status)
            }
        }
    }

    /// The status id of a refused message.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Refused(status) => Some(status.id),
            _ => None,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } | Self::Unexpected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<InfobipError> for ProviderError {
    /// Sorted into its class, with the provider's own error kept as the cause.
    fn from(error: InfobipError) -> Self {
        ProviderError::new(error.class(), error.to_string())
            .with_code(error.code())
            .with_retry_after(error.retry_after())
            .caused_by(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(group_id: i64, id: i64, name: &str) -> InfobipError {
        InfobipError::Refused(InfobipStatus {
            group_id,
            group_name: String::new(),
            id,
            name: name.into(),
            description: String::new(),
        })
    }

    fn http(status: u16) -> InfobipError {
        InfobipError::Api {
            status,
            body: ApiErrorBody::default(),
            retry_after: None,
        }
    }

    #[test]
    fn each_failure_has_its_class() {
        let cases = [
            (refused(5, 6, "REJECTED_NETWORK"), FailureClass::Permanent),
            (
                refused(2, 9, "UNDELIVERABLE_NOT_DELIVERED"),
                FailureClass::Permanent,
            ),
            (
                refused(5, 12, "REJECTED_NOT_ENOUGH_CREDITS"),
                FailureClass::Configuration,
            ),
            (http(429), FailureClass::Throttled),
            (http(500), FailureClass::Retryable),
            (http(503), FailureClass::Retryable),
            (http(401), FailureClass::Configuration),
            (http(403), FailureClass::Configuration),
            (http(400), FailureClass::Permanent),
            (InfobipError::Timeout, FailureClass::Unconfirmed),
            (
                InfobipError::Unexpected {
                    status: 200,
                    body: String::new(),
                    retry_after: None,
                },
                FailureClass::Unconfirmed,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error}");
        }
        assert_eq!(
            refused(5, 12, "REJECTED_NOT_ENOUGH_CREDITS").code(),
            Some(12)
        );
    }
}
