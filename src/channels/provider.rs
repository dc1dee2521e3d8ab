//! The provider contract: what every provider Herald sends through implements
//! ([`Provider`]), the error it reports ([`ProviderError`]) and the failure
//! classes it sorts its errors into ([`FailureClass`]). It sits below
//! `delivery/`, which decides from it; `delivery/` knows no concrete provider.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::pacing::{RecipientLimiter, ThroughputLimiter};
use crate::contract::Envelope;

/// One provider Herald sends through.
pub trait Provider: Send + Sync + std::fmt::Debug + 'static {
    /// The provider's name in logs and `/health` (`whatsapp`, `infobip`, `console`).
    fn name(&self) -> &'static str;

    /// What start-up logs say it is (its name, and what it is configured
    /// with that is not secret).
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// The account this provider sends from, as the fleet's shared limits
    /// key it (WhatsApp: the phone number id; Infobip: the account's base
    /// URL). Not secret.
    fn account(&self) -> &str {
        self.name()
    }

    /// Sends one envelope; `Ok` is the provider's message id.
    fn send<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, ProviderError>>;

    /// The client-side pacer that keeps this provider under its rate, or
    /// `None` when it needs none (the console).
    fn pacer(&self) -> Option<&ThroughputLimiter>;

    /// The longest one call can take (its timeout).
    fn call_timeout(&self) -> Duration;

    /// The per-recipient limit this provider enforces (WhatsApp's pair rate),
    /// if any.
    fn recipient_limiter(&self) -> Option<&RecipientLimiter> {
        None
    }

    /// True when a permanent failure with this provider code means the
    /// person cannot be reached on this channel now, so a message with a
    /// `fallback` goes by it (WhatsApp's "cannot reach" codes).
    fn cannot_reach(&self, _code: i64) -> bool {
        false
    }

    /// True for the provider error codes this channel documents: the ones a
    /// metric may carry as a label (others are `other`).
    fn knows_code(&self, _code: i64) -> bool {
        false
    }

    /// Uploads kept media for sends to refer to: the provider's id for it,
    /// or `None` when this provider takes no uploads.
    fn upload<'a>(
        &'a self,
        info: &'a crate::media::MediaInfo,
        body: crate::media::MediaBody,
    ) -> Option<BoxFuture<'a, Result<String, ProviderError>>> {
        let _ = (info, body);
        None
    }

    /// Starts downloading media a person sent (`media_id` is the
    /// provider's): its type and bytes; `None` when this provider has none.
    #[allow(clippy::type_complexity)]
    fn download<'a>(
        &'a self,
        media_id: &'a str,
    ) -> Option<BoxFuture<'a, Result<(String, crate::media::MediaBody), ProviderError>>> {
        let _ = media_id;
        None
    }

    /// True when a failure with this code may mean a media id the provider
    /// issued is no longer known (it is uploaded again).
    fn media_gone(&self, _code: i64) -> bool {
        false
    }
}

/// What a failure means for the message. Each channel maps its own errors
/// (Graph error codes, Infobip status groups) into these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// A temporary fault (a connection that could not be made, 5xx, the
    /// provider's transient codes): retry with exponential backoff.
    Retryable,
    /// A rate limit: retry after the limit's window, honouring `Retry-After`.
    Throttled,
    /// The message itself cannot be sent (invalid recipient, template missing or
    /// mismatched, outside the 24-hour window, policy): report, do not retry.
    Permanent,
    /// The account or token is broken (expired token, missing permission,
    /// restricted account): every message would fail alike, so keep the message,
    /// retry slowly and alert an operator.
    Configuration,
    /// The request was sent but no readable answer came back (a timeout after
    /// sending, a connection lost mid-answer, a 2xx without a message id): the
    /// provider may have accepted the message. Retried after a longer delay, and
    /// the one way a message can be delivered twice when nothing else failed.
    Unconfirmed,
}

impl FailureClass {
    /// The class of an HTTP error status from a provider whose body says
    /// nothing more. A 404 there means the configured URL is wrong (base URL,
    /// version, account id), not that this message is: the messages are kept
    /// and an operator alerted, rather than every one failed.
    pub fn of_http_status(status: u16) -> Self {
        match status {
            401 | 403 | 404 => Self::Configuration,
            429 => Self::Throttled,
            500..=599 | 408 => Self::Retryable,
            _ => Self::Permanent,
        }
    }

    /// The name used in logs and in the decision's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retry",
            Self::Throttled => "pace",
            Self::Permanent => "permanent",
            Self::Configuration => "alert",
            Self::Unconfirmed => "unconfirmed",
        }
    }

    /// True for failures that say the provider itself is down or unusable, which
    /// the circuit breaker counts.
    pub fn is_provider_fault(self) -> bool {
        matches!(
            self,
            Self::Retryable | Self::Unconfirmed | Self::Configuration
        )
    }
}

/// A failed provider call, as every provider reports it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What it means for the message.
    pub class: FailureClass,
    /// The provider's error code, when it sent one.
    pub code: Option<i64>,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// A one-line explanation for logs and dead letters.
    pub message: String,
    /// What went wrong underneath (the transport's error), when anything did.
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ProviderError {
    /// An error of `class` explained by `message`, with no code or cause.
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            code: None,
            retry_after: None,
            message: message.into(),
            source: None,
        }
    }

    /// The same, with the provider's error code.
    pub fn with_code(mut self, code: Option<i64>) -> Self {
        self.code = code;
        self
    }

    /// The same, with the provider's `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The same, keeping `source` as its cause.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
}

impl PartialEq for ProviderError {
    /// Equal when they mean the same for the message (the cause is not compared).
    fn eq(&self, other: &Self) -> bool {
        (self.class, self.code, self.retry_after, &self.message)
            == (other.class, other.code, other.retry_after, &other.message)
    }
}
