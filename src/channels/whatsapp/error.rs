//! Everything that can go wrong calling the Cloud API, and what each failure
//! means for the message: retry it, slow down, give up, or alert an operator.

use std::time::Duration;

use super::types::GraphError;
use crate::channels::provider::{FailureClass, ProviderError};

/// A failed call to the Cloud API.
#[derive(Debug, thiserror::Error)]
pub enum WhatsAppError {
    /// No response within `WHATSAPP_TIMEOUT_MS` after the request was sent.
    #[error("the WhatsApp API did not answer in time; it may have accepted the message")]
    Timeout,
    /// The connection could not be made: nothing was sent.
    #[error("could not connect to the WhatsApp API: {0}")]
    Connect(#[source] reqwest::Error),
    /// The connection broke after the request was sent.
    #[error(
        "the connection to the WhatsApp API broke after sending; it may have accepted the message: {0}"
    )]
    Interrupted(#[source] reqwest::Error),
    /// The API answered with a Graph error.
    #[error("WhatsApp API error {} (HTTP {status}): {}", .error.code, .error.message)]
    Api {
        /// HTTP status of the response.
        status: u16,
        /// The parsed Graph error.
        error: GraphError,
        /// The `Retry-After` header, when sent.
        retry_after: Option<Duration>,
    },
    /// The response could not be understood; the raw status and body are kept.
    #[error("unexpected WhatsApp API response (HTTP {status}): {body}")]
    Unexpected {
        /// HTTP status of the response.
        status: u16,
        /// The body, cut to 1 KiB.
        body: String,
        /// The `Retry-After` header, when sent.
        retry_after: Option<Duration>,
    },
}

impl WhatsAppError {
    /// What this failure means for the message.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Connect(_) => FailureClass::Retryable,
            Self::Timeout | Self::Interrupted(_) => FailureClass::Unconfirmed,
            Self::Api { status, error, .. } => classify(error.code, *status, error.is_transient),
            // A success status whose body we cannot read: sent, answer unknown.
            Self::Unexpected { status, .. } if (200..300).contains(status) => {
                FailureClass::Unconfirmed
            }
            Self::Unexpected { status, .. } => FailureClass::of_http_status(*status),
        }
    }

    /// The Graph error code, when the API sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { error, .. } => Some(error.code),
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

impl From<WhatsAppError> for ProviderError {
    /// Sorted into its class, with the provider's own error kept as the cause.
    fn from(error: WhatsAppError) -> Self {
        ProviderError::new(error.class(), error.to_string())
            .with_code(error.code())
            .with_retry_after(error.retry_after())
            .caused_by(error)
    }
}

/// Maps a Graph error code to its class. The table follows Meta's error-code
/// reference; `docs/providers/whatsapp.md` gives each code's meaning and source.
///
/// Unknown codes are never dropped silently: they are classified by HTTP status
/// and Meta's `is_transient`, and an unknown 4xx is treated as retryable, so
/// it is retried with backoff and finally dead-lettered where it can be seen,
/// rather than discarded.
pub fn classify(code: i64, status: u16, is_transient: Option<bool>) -> FailureClass {
    match code {
        // Rate limits: API calls (4, 80007), throughput (130429), pair rate (131056),
        // (de)registration rate (133016).
        4 | 80007 | 130_429 | 131_056 | 133_016 => FailureClass::Throttled,
        // Temporary: unknown/service errors, service unavailable, maintenance, registration server.
        1 | 2 | 131_000 | 131_016 | 131_057 | 133_004 => FailureClass::Retryable,
        // The token, app or account: expired/invalid token, permissions, blocked or
        // locked account, payment, certificate, deleted or unregistered number.
        0
        | 3
        | 10
        | 33
        | 190
        | 200..=299
        | 368
        | 131_005
        | 131_031
        | 131_037
        | 131_042
        | 131_045
        | 133_000
        | 133_010 => FailureClass::Configuration,
        // This message cannot be sent: bad parameters, undeliverable recipient,
        // window closed, opted out, unsupported type, media, template problems, policy.
        100 | 130_472 | 130_497 | 131_008 | 131_009 | 131_021 | 131_026 | 131_030 | 131_047
        | 131_048 | 131_049 | 131_050 | 131_051 | 131_052 | 131_053 | 131_062 | 131_063
        | 131_064 | 132_000 | 132_001 | 132_005 | 132_007 | 132_008 | 132_012 | 132_015
        | 132_016 | 132_068 | 132_069 | 135_000 | 137_000 => FailureClass::Permanent,
        _ if is_transient == Some(true) => FailureClass::Retryable,
        _ => match FailureClass::of_http_status(status) {
            FailureClass::Permanent => FailureClass::Retryable,
            class => class,
        },
    }
}

/// True for the Graph error codes [`classify`] names (Meta's reference).
pub fn is_documented(code: i64) -> bool {
    matches!(
        code,
        0 | 1
            | 2
            | 3
            | 4
            | 10
            | 33
            | 100
            | 190
            | 200..=299
            | 368
            | 80007
            | 130_429
            | 130_472
            | 130_497
            | 131_000..=131_064
            | 132_000..=132_069
            | 133_000..=133_016
            | 135_000
            | 137_000
    )
}

/// True for the codes that mean WhatsApp cannot reach this person now, after
/// which a message with a `fallback` goes by SMS under the same message id:
/// 131026 undeliverable, 131047 outside the 24-hour window, 131049 the
/// per-user marketing limit, 130472 Meta's experiment group. Never 131050:
/// the person chose to stop marketing messages.
pub fn unreachable_on_whatsapp(code: i64) -> bool {
    matches!(code, 131_026 | 131_047 | 131_049 | 130_472)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_codes_map_to_their_class() {
        let cases = [
            (130_429, 400, FailureClass::Throttled),
            (131_056, 400, FailureClass::Throttled),
            (4, 400, FailureClass::Throttled),
            (80007, 400, FailureClass::Throttled),
            (131_000, 500, FailureClass::Retryable),
            (131_016, 503, FailureClass::Retryable),
            (2, 503, FailureClass::Retryable),
            (190, 401, FailureClass::Configuration),
            (0, 401, FailureClass::Configuration),
            (10, 403, FailureClass::Configuration),
            (200, 403, FailureClass::Configuration),
            (299, 403, FailureClass::Configuration),
            (368, 403, FailureClass::Configuration),
            (131_026, 400, FailureClass::Permanent),
            (131_047, 400, FailureClass::Permanent),
            (132_000, 400, FailureClass::Permanent),
            (132_001, 404, FailureClass::Permanent),
            (131_051, 400, FailureClass::Permanent),
            (100, 400, FailureClass::Permanent),
        ];
        for (code, status, class) in cases {
            assert_eq!(classify(code, status, None), class, "code {code}");
        }
    }

    #[test]
    fn unknown_codes_are_never_permanent() {
        assert_eq!(classify(999_999, 400, None), FailureClass::Retryable);
        assert_eq!(classify(999_999, 400, Some(true)), FailureClass::Retryable);
        assert_eq!(classify(999_999, 500, None), FailureClass::Retryable);
        assert_eq!(classify(999_999, 429, None), FailureClass::Throttled);
        assert_eq!(classify(999_999, 401, None), FailureClass::Configuration);
        assert_eq!(classify(999_999, 404, None), FailureClass::Configuration);
    }

    #[test]
    fn bodies_without_a_graph_error_use_the_status() {
        let e = |status| WhatsAppError::Unexpected {
            status,
            body: String::new(),
            retry_after: None,
        };
        assert_eq!(e(502).class(), FailureClass::Retryable);
        assert_eq!(e(429).class(), FailureClass::Throttled);
        assert_eq!(e(401).class(), FailureClass::Configuration);
        assert_eq!(e(404).class(), FailureClass::Configuration);
        assert_eq!(e(400).class(), FailureClass::Permanent);
        assert_eq!(e(200).class(), FailureClass::Unconfirmed);
        assert_eq!(WhatsAppError::Timeout.class(), FailureClass::Unconfirmed);
    }
}
