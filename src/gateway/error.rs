//! The gateway's one error type and its RFC 9457 `application/problem+json` form.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::access_log::ErrorRecord;
use crate::domain::FieldError;
use crate::publisher::{PublishError, PublishErrorKind};

/// Everything the HTTP API can answer with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `401`: no API key, or one that matches no configured key.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// `400`: the body is not JSON (syntax, encoding, nesting too deep).
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// `400`: the body is JSON but some fields are invalid; lists them all.
    #[error("the message has invalid fields")]
    InvalidFields(Vec<FieldError>),
    /// `400`: a header is invalid (named in the detail).
    #[error("{0}")]
    InvalidHeader(String),
    /// `413`: the body is larger than `MAX_BODY_BYTES`.
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// `415`: the body is not declared as `application/json`.
    #[error("the body must be sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// `422`: an `Idempotency-Key` was reused with a different body.
    #[error("this Idempotency-Key was already used with a different body")]
    IdempotencyMismatch,
    /// `503`: this API key has `IDEMPOTENCY_MAX_KEYS` keyed requests in flight;
    /// none can be forgotten, so a new key cannot be remembered.
    #[error(
        "too many requests with an Idempotency-Key are in flight for this API key; nothing was published"
    )]
    IdempotencyStoreFull,
    /// `409`: another gateway is publishing a request with this
    /// `Idempotency-Key` and did not finish while this one waited.
    #[error(
        "a request with this Idempotency-Key is still being published by another gateway; retry after Retry-After seconds"
    )]
    IdempotencyInFlight { retry_after: Duration },
    /// `503`: the fleet's idempotency keys (DynamoDB) could not be read or
    /// written; nothing was published.
    #[error("the idempotency keys cannot be checked now; nothing was published: retry")]
    FleetUnavailable(#[source] crate::fleet::FleetError),
    /// `429`: the API key is over its request rate.
    #[error("too many requests for this API key")]
    RateLimited { retry_after: Duration },
    /// `503`: the queue could not take the message. The detail says whether
    /// nothing was published or the outcome is unknown (see [`PublishErrorKind`]).
    #[error("{}", unavailable_detail(.0.kind))]
    Unavailable(#[source] PublishError),
    /// `413`: the envelope is larger than the queue accepts.
    #[error("the message is larger than the queue accepts (SNS takes 256 KiB per envelope)")]
    EnvelopeTooLarge(#[source] PublishError),
    /// `503`: the request took longer than the gateway allows; the publish may
    /// still complete.
    #[error(
        "the request timed out; the message may have been published: retry with the same Idempotency-Key"
    )]
    TimedOut,
    /// `422`: the message's channel (or its fallback's) has no provider here.
    #[error("{field}: no {channel} provider is configured in this deployment")]
    ChannelNotConfigured {
        /// `channel` or `fallback.channel`.
        field: &'static str,
        /// The channel's name.
        channel: &'static str,
    },
    /// `404`: no inbound message with this id for the caller's tenant.
    #[error("no message with this id was received for this API key's tenant")]
    InboundNotFound,
    /// `502`: the provider refused or did not answer a call made for the
    /// request (the cause is in the log line).
    #[error("the provider did not do it; retry later")]
    ProviderFailed(String),
    /// `422`: a free-form WhatsApp message to a person whose 24-hour window
    /// Herald knows to be closed; `lastInboundAt` is their last message.
    #[error(
        "the recipient's 24-hour customer-service window is closed: send a template, or add an SMS fallback"
    )]
    OutsideWindow {
        /// RFC 3339, `None` when Herald never heard from them (a 131047 closed it).
        last_inbound_at: Option<String>,
    },
    /// `422`: the account has no template of that name in that language.
    #[error(
        "the template {name:?} in {language:?} is not one of the account's: check its name and language in the WhatsApp Manager"
    )]
    TemplateNotFound { name: String, language: String },
    /// `422`: the template cannot be sent in its status.
    #[error("the template {name:?} in {language:?} is {status}, not APPROVED: it cannot be sent")]
    TemplateNotApproved {
        name: String,
        language: String,
        /// Meta's status (`PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, …).
        status: String,
    },
    /// `422`: the sender named is not one of the caller's tenant.
    #[error("{}: not a sender this tenant may use", .0.first().map_or("from", |e| e.field.as_str()))]
    SenderNotAllowed(Vec<FieldError>),
    /// `422`: the recipient opted out of the message's channel.
    #[error("the recipient opted out of {0}; nothing was sent")]
    RecipientOptedOut(&'static str),
    /// `400`: a path parameter is not what the route takes.
    #[error("{0}")]
    InvalidPath(String),
    /// `404`: no such dead letter for this API key.
    #[error("no dead letter with this id for this API key")]
    DeadLetterNotFound,
    /// `404`: the number has no opt-out.
    #[error("this number has no opt-out")]
    OptOutNotFound,
    /// `404`: no such route.
    #[error("no such endpoint")]
    NotFound,
    /// `404`: no such message for this API key (unknown and foreign ids alike).
    #[error("no message with this id for this API key")]
    MessageNotFound,
    /// `415`: a media type WhatsApp does not take.
    #[error("WhatsApp does not take {0}: upload one of {types}", types = crate::media::kinds::all_types())]
    MediaTypeNotAccepted(String),
    /// `413`: over the largest size WhatsApp (or `MEDIA_MAX_BYTES`) takes
    /// for the type.
    #[error("the largest {kind} accepted is {limit} bytes")]
    MediaTooLarge { kind: &'static str, limit: u64 },
    /// `400`: the upload broke off, or had no `file` part.
    #[error("{0}")]
    UploadIncomplete(String),
    /// `404`: no media with this id for this API key's tenant.
    #[error("no media with this id for this API key's tenant")]
    MediaNotFound,
    /// `501`: media is not kept by this deployment (SNS mode).
    #[error("media is not kept by this deployment: set MEDIA_BUCKET to an S3 bucket")]
    NoMediaStore,
    /// `503`: the media store failed (logged).
    #[error("media cannot be kept or read right now; try again")]
    MediaUnavailable(#[source] crate::media::MediaError),
    /// `404`: no batch with this id for this API key.
    #[error("no batch with this id for this API key")]
    BatchNotFound,
    /// `409`: the message was handed to a provider (or is being): too late
    /// to cancel.
    #[error("the message was already handed to its provider ({0}): it cannot be cancelled")]
    AlreadySent(&'static str),
    /// `501`: `sendAt` or quiet hours where nothing can keep a message
    /// until its time (SNS mode without `STATUS_TABLE`).
    #[error(
        "scheduled sends (sendAt, quietHours) need somewhere to wait: set STATUS_TABLE to a DynamoDB table"
    )]
    SchedulingNotConfigured,
    /// `501`: statuses are not kept here (SNS mode without `STATUS_TABLE`).
    #[error(
        "statuses and opt-outs are not kept by this deployment: set STATUS_TABLE to a DynamoDB table"
    )]
    NoStatusStore,
    /// `503`: the status store could not be read or written (logged).
    #[error("the status store is unavailable; try again")]
    StoreUnavailable(#[source] crate::status::StoreError),
    /// `408`: a webhook body that did not arrive within its read deadline
    /// (it held a share of the webhooks' memory budget while it trickled).
    #[error("the body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// `503`: webhook bodies in flight hold all of `WEBHOOK_BODIES_MAX_BYTES`;
    /// the provider retries.
    #[error("too many webhook bodies are being read; retry")]
    WebhooksBusy,
    /// `401`: a webhook without its signature.
    #[error("the request is not signed: {0} is missing")]
    SignatureMissing(String),
    /// `403`: a webhook whose signature does not match (or a wrong verify token).
    #[error("the signature or token does not match")]
    SignatureInvalid,
    /// `405`: the route exists but not for this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// `500`: a bug in Herald. The detail is generic; the context and the
    /// cause are logged, never sent (see [`ApiError::internal`]).
    #[error("internal error")]
    Internal {
        /// What failed, for the log.
        context: String,
        /// The underlying error, for the log.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The refusal every route behind an API key documents.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "Missing or unknown API key",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // the API document reads its type, nothing its value
pub struct KeyRefusal(ProblemDocument<'static>);

/// The refusals, besides the key's, every route backed by the status store
/// documents.
#[derive(utoipa::IntoResponses)]
pub enum StoreRefusals {
    /// No store.
    #[response(
        status = 501,
        description = "No status store",
        content_type = "application/problem+json"
    )]
    NoStore(ProblemDocument<'static>),
    /// The store failed.
    #[response(
        status = 503,
        description = "The store is unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemDocument<'static>),
}

/// The refusals, besides the key's, every dead-letter route documents.
#[derive(utoipa::IntoResponses)]
pub enum QueueRefusals {
    /// The queue failed.
    #[response(
        status = 503,
        description = "The queue is unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(ProblemDocument<'static>),
}

/// The refusals, besides the key's, both send routes document.
#[derive(utoipa::IntoResponses)]
pub enum SendRefusals {
    /// Another gateway holds the idempotency key.
    #[response(
        status = 409,
        description = "idempotency-key-in-flight: another gateway is publishing a request with this key; retry after Retry-After",
        content_type = "application/problem+json"
    )]
    KeyInFlight(ProblemDocument<'static>),
    /// `sendAt` or quiet hours with SNS and no `STATUS_TABLE`.
    #[response(
        status = 501,
        description = "scheduling-not-configured: sendAt or quietHours, with SNS and no STATUS_TABLE",
        content_type = "application/problem+json"
    )]
    SchedulingNotConfigured(ProblemDocument<'static>),
    /// Not JSON.
    #[response(
        status = 415,
        description = "Not JSON",
        content_type = "application/problem+json"
    )]
    NotJson(ProblemDocument<'static>),
}

/// The RFC 9457 problem document every error is (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDocument<'a> {
    /// `/problems/<code>`.
    #[serde(rename = "type")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: &'static str,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for people.
    detail: String,
    /// A stable machine-readable name for the problem.
    code: &'static str,
    /// Every invalid field, for `invalid-fields`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    errors: Option<&'a [FieldError]>,
    /// For `outside-customer-service-window`: the person's last message to
    /// the sending number (RFC 3339), `null` when Herald never heard from them.
    #[serde(rename = "lastInboundAt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    last_inbound_at: Option<Option<&'a str>>,
    /// For `template-not-approved`: the template's status.
    #[serde(rename = "templateStatus", skip_serializing_if = "Option::is_none")]
    template_status: Option<&'a str>,
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::SignatureMissing(_) => StatusCode::UNAUTHORIZED,
            Self::MalformedJson(_)
            | Self::InvalidFields(_)
            | Self::InvalidHeader(_)
            | Self::InvalidPath(_)
            | Self::UploadIncomplete(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) | Self::EnvelopeTooLarge(_) | Self::MediaTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType | Self::MediaTypeNotAccepted(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::IdempotencyMismatch
            | Self::ChannelNotConfigured { .. }
            | Self::SenderNotAllowed(_)
            | Self::OutsideWindow { .. }
            | Self::TemplateNotFound { .. }
            | Self::TemplateNotApproved { .. }
            | Self::RecipientOptedOut(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::IdempotencyInFlight { .. } | Self::AlreadySent(_) => StatusCode::CONFLICT,
            Self::ProviderFailed(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_)
            | Self::TimedOut
            | Self::IdempotencyStoreFull
            | Self::StoreUnavailable(_)
            | Self::MediaUnavailable(_)
            | Self::WebhooksBusy
            | Self::FleetUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound
            | Self::InboundNotFound
            | Self::MessageNotFound
            | Self::BatchNotFound
            | Self::MediaNotFound
            | Self::OptOutNotFound
            | Self::DeadLetterNotFound => StatusCode::NOT_FOUND,
            Self::NoStatusStore | Self::SchedulingNotConfigured | Self::NoMediaStore => {
                StatusCode::NOT_IMPLEMENTED
            }
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::SignatureInvalid => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem code, also the last segment of the problem `type`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::MalformedJson(_) => "malformed-json",
            Self::InvalidFields(_) => "invalid-fields",
            Self::InvalidHeader(_) => "invalid-header",
            Self::PayloadTooLarge(_) | Self::EnvelopeTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::IdempotencyMismatch => "idempotency-key-reused",
            Self::IdempotencyStoreFull => "idempotency-keys-in-flight",
            Self::IdempotencyInFlight { .. } => "idempotency-key-in-flight",
            Self::FleetUnavailable(_) => "idempotency-store-unavailable",
            Self::RateLimited { .. } => "rate-limited",
            Self::Unavailable(e) if e.kind == PublishErrorKind::Throttled => "queue-throttled",
            Self::Unavailable(e) if e.kind.may_have_published() => "outcome-unknown",
            Self::Unavailable(_) => "queue-unavailable",
            Self::TimedOut => "timeout",
            Self::ChannelNotConfigured { .. } => "channel-not-configured",
            Self::RecipientOptedOut(_) => "recipient-opted-out",
            Self::SenderNotAllowed(_) => "sender-not-allowed",
            Self::InboundNotFound => "inbound-not-found",
            Self::ProviderFailed(_) => "provider-error",
            Self::OutsideWindow { .. } => crate::window::OUTSIDE_CODE,
            Self::TemplateNotFound { .. } => "template-not-found",
            Self::TemplateNotApproved { .. } => "template-not-approved",
            Self::InvalidPath(_) => "invalid-path",
            Self::OptOutNotFound => "opt-out-not-found",
            Self::DeadLetterNotFound => "dead-letter-not-found",
            Self::NotFound => "not-found",
            Self::MessageNotFound => "message-not-found",
            Self::BatchNotFound => "batch-not-found",
            Self::MediaTypeNotAccepted(_) => "media-type-not-accepted",
            Self::MediaTooLarge { .. } => "media-too-large",
            Self::UploadIncomplete(_) => "upload-incomplete",
            Self::MediaNotFound => "media-not-found",
            Self::NoMediaStore => "media-not-configured",
            Self::MediaUnavailable(_) => "media-store-unavailable",
            Self::AlreadySent(_) => "already-sent",
            Self::SchedulingNotConfigured => "scheduling-not-configured",
            Self::NoStatusStore => "status-store-not-configured",
            Self::StoreUnavailable(_) => "store-unavailable",
            Self::WebhooksBusy => "webhooks-busy",
            Self::BodyTimeout(_) => "body-timeout",
            Self::SignatureMissing(_) => "signature-missing",
            Self::SignatureInvalid => "signature-invalid",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Internal { .. } => "internal",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::IdempotencyInFlight { retry_after } => {
                Some(*retry_after)
            }
            Self::Unavailable(e) => Some(e.retry_after()),
            Self::TimedOut
            | Self::IdempotencyStoreFull
            | Self::StoreUnavailable(_)
            | Self::MediaUnavailable(_)
            | Self::FleetUnavailable(_)
            | Self::WebhooksBusy => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Operators learn the cause from the request's log line (see access_log);
        // the client gets a generic detail.
        let record = match &self {
            Self::Unavailable(e) | Self::EnvelopeTooLarge(e) => Some(ErrorRecord {
                severe: e.kind == PublishErrorKind::Misconfigured,
                code: self.code(),
                message: e.message.clone(),
                cause: e.cause_chain(),
            }),
            Self::StoreUnavailable(e) => Some(ErrorRecord::transient(self.code(), e)),
            Self::ProviderFailed(cause) => Some(ErrorRecord {
                severe: false,
                code: self.code(),
                message: "a provider call made for the request failed".into(),
                cause: Some(cause.clone()),
            }),
            Self::MediaUnavailable(e) => Some(ErrorRecord::transient(self.code(), e)),
            Self::FleetUnavailable(e) => Some(ErrorRecord::transient(self.code(), e)),
            Self::Internal { context, source } => Some(ErrorRecord {
                severe: true,
                code: self.code(),
                message: context.clone(),
                cause: source.as_deref().map(|e| crate::telemetry::chain(e)),
            }),
            _ => None,
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let problem = ProblemDocument {
            kind: format!("/problems/{}", self.code()),
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
            errors: match &self {
                Self::InvalidFields(errors) | Self::SenderNotAllowed(errors) => Some(errors),
                _ => None,
            },
            last_inbound_at: match &self {
                Self::OutsideWindow { last_inbound_at } => Some(last_inbound_at.as_deref()),
                _ => None,
            },
            template_status: match &self {
                Self::TemplateNotApproved { status, .. } => Some(status),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).expect("a problem document always serialises");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(wait) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        if matches!(self, Self::Unauthorized) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(record) = record {
            response.extensions_mut().insert(record);
        }
        response
    }
}

impl ApiError {
    /// A `500` for a bug: `context` says what failed, for the log only.
    pub fn internal(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// A `500` caused by `source`, which is logged with `context` and never
    /// sent to the client.
    pub fn internal_caused_by(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        match error.kind {
            PublishErrorKind::TooLarge => Self::EnvelopeTooLarge(error),
            _ => Self::Unavailable(error),
        }
    }
}

/// What a client is told about a publish that failed: whether it may retry
/// freely, or must retry with the same `Idempotency-Key`.
fn unavailable_detail(kind: PublishErrorKind) -> &'static str {
    if kind.may_have_published() {
        "the queue did not answer in time; the message may have been published: retry with the same Idempotency-Key"
    } else {
        "the message queue is unavailable; nothing was published"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status() {
        let cases = [
            (ApiError::Unauthorized, 401),
            (ApiError::MalformedJson("x".into()), 400),
            (ApiError::InvalidFields(vec![]), 400),
            (ApiError::PayloadTooLarge(10), 413),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::IdempotencyMismatch, 422),
            (
                ApiError::RateLimited {
                    retry_after: Duration::from_secs(1),
                },
                429,
            ),
            (
                ApiError::Unavailable(PublishError::new(PublishErrorKind::Throttled, "t")),
                503,
            ),
            (
                ApiError::Unavailable(PublishError::new(PublishErrorKind::Misconfigured, "m")),
                503,
            ),
            (ApiError::TimedOut, 503),
            (ApiError::internal("bug"), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn an_unknown_outcome_is_never_called_nothing_published() {
        let unknown = ApiError::from(PublishError::new(PublishErrorKind::OutcomeUnknown, "t"));
        assert_eq!(unknown.status().as_u16(), 503);
        assert_eq!(unknown.code(), "outcome-unknown");
        assert!(unknown.to_string().contains("may have been published"));
        assert!(!unknown.to_string().contains("nothing was published"));
        assert!(
            ApiError::TimedOut
                .to_string()
                .contains("same Idempotency-Key")
        );
        let definite = ApiError::from(PublishError::new(PublishErrorKind::Transient, "t"));
        assert!(definite.to_string().contains("nothing was published"));
        let too_large = ApiError::from(PublishError::new(PublishErrorKind::TooLarge, "t"));
        assert_eq!(too_large.status().as_u16(), 413);
    }

    #[tokio::test]
    async fn an_internal_error_logs_its_cause_and_never_sends_it() {
        let cause = std::io::Error::other("token=s3cr3t");
        let response = ApiError::internal_caused_by("a batch entry's publish task failed", cause)
            .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let record = response.extensions().get::<ErrorRecord>().cloned().unwrap();
        assert!(record.severe);
        assert_eq!(record.message, "a batch entry's publish task failed");
        assert_eq!(record.cause.as_deref(), Some("token=s3cr3t"));
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains(r#""detail":"internal error""#), "{body}");
        assert!(
            !body.contains("s3cr3t") && !body.contains("batch"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn an_unavailable_store_logs_the_chain_and_sends_a_generic_detail() {
        let cause = std::io::Error::other("ThrottlingException: rate exceeded");
        let error = ApiError::StoreUnavailable(crate::status::StoreError::caused_by(
            "cannot read a status",
            cause,
        ));
        let response = error.into_response();
        let record = response.extensions().get::<ErrorRecord>().cloned().unwrap();
        assert!(!record.severe);
        assert_eq!(record.message, "status store: cannot read a status");
        assert_eq!(
            record.cause.as_deref(),
            Some("ThrottlingException: rate exceeded")
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("the status store is unavailable; try again"));
        assert!(!body.contains("Throttling"), "{body}");
    }

    #[test]
    fn unavailable_answers_carry_retry_after_and_hide_the_cause() {
        let error = ApiError::Unavailable(PublishError::new(
            PublishErrorKind::Misconfigured,
            "arn:aws:sns:eu-west-1:123456789012:t missing",
        ));
        let response = error.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
