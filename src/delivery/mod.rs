//! The delivery pipeline: turns one envelope into one provider call and decides
//! what should happen to it next. The same code runs under Lambda, under the
//! SQS poller and in-process behind the embedded queue; those differ only in
//! how an envelope arrives and how a [`Decision`] is acknowledged.
//!
//! Per provider the pipeline keeps a circuit breaker and an estimate of the
//! call latency; from the rate caps and that latency it tells the transports
//! how many deliveries to hold in flight ([`Pipeline::in_flight_target`]), so
//! that the cap is reached at any latency without tuning: rate is the pacer's
//! job, not the concurrency limit's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

use crate::channels::{Channels, Provider};
use crate::config::DeliveryConfig;
use crate::contract::{Envelope, EnvelopeError};
use crate::status::StatusStore;

pub mod breaker;
mod capacity;
pub mod decision;
pub mod expiry;
pub mod media;
mod media_job;
mod outcome;
mod recording;
pub mod retry;
mod window;

pub use crate::channels::pacing::{RecipientLimiter, ThroughputLimiter};
pub use crate::channels::provider::{FailureClass, ProviderError};
pub use breaker::{Admission, CircuitBreaker};
pub use decision::{Ack, Decision};
pub use retry::RetryPolicy;

/// Tries at writing a delivery's status before giving up on it (50, 200, 800 ms apart).
const STATUS_WRITE_ATTEMPTS: u32 = 4;

/// Limits of the pipeline that are not per channel.
#[derive(Debug, Clone, Copy)]
pub struct PipelineLimits {
    /// Attempts before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// Most deliveries in flight; `None`: from the caps (see [`CEILING_SPAN`]).
    pub max_in_flight: Option<usize>,
    /// How long an open circuit waits before its probe.
    pub circuit_cooldown: Duration,
    /// Whether a free-form WhatsApp message to a person whose window is
    /// known closed is held back (`WHATSAPP_WINDOW`).
    pub window_checks: bool,
}

impl Default for PipelineLimits {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_in_flight: None,
            circuit_cooldown: Duration::from_secs(30),
            window_checks: true,
        }
    }
}

/// One provider: its channel, its circuit and how long its calls take.
#[derive(Debug)]
struct ProviderState {
    channel: Arc<dyn Provider>,
    breaker: Arc<CircuitBreaker>,
    /// Exponentially weighted moving average of the call latency.
    latency: Mutex<Duration>,
}

/// The channels, their circuits and pacing, and the retry policy.
#[derive(Debug)]
pub struct Pipeline {
    channels: Channels,
    providers: Vec<ProviderState>,
    retry: RetryPolicy,
    max_attempts: u32,
    ceiling: usize,
    /// `WHATSAPP_WINDOW`: hold back free-form messages outside the window.
    window_checks: bool,
    /// Where `submitted` and `failed` are recorded, and opt-outs read, when
    /// a store is configured.
    statuses: Option<Arc<dyn StatusStore>>,
    /// Where a status the store would not take travels again (the gateway's
    /// topic), to be recorded by a later delivery: see [`recording`].
    status_outbox: Option<recording::Outbox>,
    /// Whose opt-outs each tenant's sends honour.
    tenants: Arc<crate::tenants::Tenants>,
    /// Kept media, for sends that refer to it by `mediaId`.
    media: Option<Arc<dyn crate::media::MediaStore>>,
}

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PipelineError(#[from] crate::channels::ChannelBuildError);

impl Pipeline {
    /// Builds the pipeline once per process from the delivery configuration.
    pub fn from_config(config: &DeliveryConfig) -> Result<Self, PipelineError> {
        let retry = RetryPolicy {
            base: config.retry_base,
            max: config.retry_max,
            ..RetryPolicy::default()
        };
        let limits = PipelineLimits {
            max_attempts: config.max_attempts,
            max_in_flight: config.concurrency,
            circuit_cooldown: config.circuit_cooldown,
            window_checks: config.window_checks,
        };
        Ok(Self::new(Channels::from_config(config)?, retry, limits))
    }

    /// Records `submitted` and `failed` in `store` (the embedded database, or
    /// DynamoDB with `STATUS_TABLE`), and checks its opt-outs before each delivery.
    pub fn with_statuses(mut self, store: Arc<dyn StatusStore>) -> Self {
        self.statuses = Some(store);
        self
    }

    /// Honours, for each tenant, the opt-outs [`crate::tenants::Tenants::consent_holders`]
    /// names (without it: each tenant's own).
    pub fn with_tenants(mut self, tenants: Arc<crate::tenants::Tenants>) -> Self {
        self.tenants = tenants;
        self
    }

    /// Sends a status the store would not take through `outbox` (the
    /// gateway's topic), to be recorded when the envelope comes back.
    pub fn with_status_outbox(mut self, outbox: Arc<dyn crate::publisher::Publisher>) -> Self {
        self.status_outbox = Some(recording::Outbox(outbox));
        self
    }

    /// Assembles a pipeline from parts (tests shorten the retry policy).
    pub fn new(channels: Channels, retry: RetryPolicy, limits: PipelineLimits) -> Self {
        let providers: Vec<ProviderState> = channels
            .all()
            .into_iter()
            .map(|channel| ProviderState::new(channel, limits.circuit_cooldown))
            .collect();
        let automatic = capacity::automatic_ceiling(&providers);
        Self {
            channels,
            providers,
            retry,
            max_attempts: limits.max_attempts.max(1),
            ceiling: limits.max_in_flight.unwrap_or(automatic).max(1),
            window_checks: limits.window_checks,
            statuses: None,
            status_outbox: None,
            tenants: Arc::default(),
            media: None,
        }
    }

    /// Each provider with its circuit (the fleet shares their limits).
    pub fn providers(&self) -> impl Iterator<Item = (&Arc<dyn Provider>, &Arc<CircuitBreaker>)> {
        self.providers.iter().map(|p| (&p.channel, &p.breaker))
    }

    /// Describes the channels for the startup log line.
    pub fn describe(&self) -> String {
        self.channels.describe()
    }

    /// Decodes a queue body (an envelope, or SNS's JSON wrapper around one) and
    /// delivers it. `attempt` is 1 for the first delivery.
    pub async fn deliver_payload(&self, body: &str, attempt: u32) -> Decision {
        self.deliver_payload_before(body, attempt, None).await
    }

    /// As [`Pipeline::deliver_payload`], but a message whose pacing slot would
    /// come after `deadline` is not sent: it is a retry that does not count
    /// (Lambda uses this to end before its invocation's deadline).
    pub async fn deliver_payload_before(
        &self,
        body: &str,
        attempt: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Decision {
        match envelope_from_queue_body(body) {
            Ok(envelope) => {
                let decision = self.deliver_before(&envelope, attempt, deadline).await;
                expiry::cap_retry(&envelope, decision)
            }
            Err(e) => {
                let decision = Decision::DeadLetter {
                    reason: format!("unreadable envelope: {e}"),
                };
                tracing::error!(action = decision.action(), attempt, error.message = %e, "envelope rejected; it is never sent");
                decision
            }
        }
    }

    /// Delivers one envelope and logs its outcome as one structured line.
    pub async fn deliver(&self, envelope: &Envelope, attempt: u32) -> Decision {
        let decision = self.deliver_before(envelope, attempt, None).await;
        expiry::cap_retry(envelope, decision)
    }

    async fn deliver_before(
        &self,
        envelope: &Envelope,
        attempt: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Decision {
        let span = tracing::info_span!("deliver", envelope_id = %envelope.id, channel = envelope.channel.as_str(), to = %envelope.to.masked(), attempt);
        async move {
            // A status to record, not a message to send.
            if let Some(decision) = self.not_a_message(envelope, attempt).await {
                return decision;
            }
            // A message whose first leg already failed over (a retry after the
            // SMS leg's own retryable failure, or an operator's redrive) goes
            // straight to that leg: WhatsApp is not asked again. Only messages
            // with a fallback pay this read.
            if let Some(leg) = envelope.failover()
                && self.failed_over_before(envelope).await
            {
                return Box::pin(self.deliver_before(&leg, attempt, deadline)).await;
            }
            if let Some(decision) = self.expired(envelope, attempt).await {
                outcome::log_decision(&decision, envelope.message_type());
                self.count(envelope, &decision);
                return decision;
            }
            if let Some(decision) = self.opted_out(envelope, attempt).await {
                outcome::log_decision(&decision, envelope.message_type());
                self.count(envelope, &decision);
                return decision;
            }
            if let Some(decision) = self.outside_window(envelope, attempt).await {
                outcome::log_decision(&decision, envelope.message_type());
                self.count(envelope, &decision);
                return match envelope.failover() {
                    // Straight to SMS: WhatsApp is not asked.
                    Some(leg) => Box::pin(self.deliver_before(&leg, attempt, deadline)).await,
                    None => decision,
                };
            }
            let (decision, busy) = self.send(envelope, attempt, deadline).await;
            expiry::note_lateness(envelope, attempt, &decision);
            outcome::log_decision(&decision, envelope.message_type());
            self.count(envelope, &decision);
            let recording = tokio::time::Instant::now();
            self.record_status(envelope, attempt, &decision).await;
            self.learn_window(envelope, &decision).await;
            if let (Some(busy), Some(provider)) = (busy, self.provider_for(envelope)) {
                // What a delivery holds its place in flight for, besides the
                // pacer: the checks before the call (a shared pair-rate
                // window is a DynamoDB write), the call, and its status.
                provider.observe(busy + recording.elapsed());
            }
            match (&decision, envelope.failover()) {
                (
                    Decision::GiveUp {
                        code: Some(code), ..
                    },
                    Some(leg),
                ) if self
                    .channels
                    .for_envelope(envelope)
                    .is_some_and(|c| c.cannot_reach(*code)) =>
                {
                    tracing::info!(
                        error.code = code,
                        fallback = leg.channel.as_str(),
                        "the channel cannot reach the person: the message goes by its fallback"
                    );
                    Box::pin(self.deliver_before(&leg, attempt, deadline)).await
                }
                _ => decision,
            }
        }
        .instrument(span)
        .await
    }

    /// The work of an envelope that carries no message to send: a status
    /// to record, or an inbound media job.
    async fn not_a_message(&self, envelope: &Envelope, attempt: u32) -> Option<Decision> {
        let (decision, kind) = if let Some(pending) = &envelope.pending_status {
            (self.record_pending(envelope, pending).await, "status")
        } else if let Some(job) = &envelope.inbound_media {
            (
                self.media_job(envelope, job, attempt).await,
                "inbound-media",
            )
        } else {
            return None;
        };
        outcome::log_decision(&decision, kind);
        Some(decision)
    }

    fn provider_for(&self, envelope: &Envelope) -> Option<&ProviderState> {
        self.channels
            .for_envelope(envelope)
            .and_then(|c| self.providers.iter().find(|p| Arc::ptr_eq(&p.channel, c)))
    }

    /// Sends `envelope` when it is cleared to; with the decision, how long
    /// the checks and the call took when the provider was called.
    async fn send(
        &self,
        envelope: &Envelope,
        attempt: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> (Decision, Option<Duration>) {
        let Some(provider) = self.provider_for(envelope) else {
            let decision = self.decide(
                ProviderError::new(
                    FailureClass::Configuration,
                    format!(
                        "no {} channel is configured here",
                        envelope.channel.as_str()
                    ),
                ),
                attempt,
            );
            return (decision, None);
        };
        let resolved = match self.resolve_media(provider, envelope, attempt).await {
            Ok(resolved) => resolved,
            Err(decision) => return (decision, None),
        };
        let outgoing = resolved.as_ref().map_or(envelope, |r| &r.envelope);
        let deadline = expiry::until_expiry(envelope, deadline);
        let (admission, checks) = match Self::clear_to_send(provider, envelope, deadline).await {
            Ok(cleared) => cleared,
            Err(hold) => return (hold, None),
        };

        if let Some(stop) = self.hand(envelope, attempt).await {
            // Cancelled while it waited, or the store cannot say: it gives
            // back what it took.
            provider.breaker.cancel(admission);
            if let Some(pairs) = provider.channel.recipient_limiter() {
                pairs.release(envelope.to.as_str()).await;
            }
            return (stop, None);
        }
        let started = tokio::time::Instant::now();
        let result = provider.channel.send(outgoing).await;
        let busy = checks + started.elapsed();
        crate::metrics::provider_call(envelope.channel.as_str(), started.elapsed().as_secs_f64());
        provider
            .breaker
            .record(admission, result.as_ref().err().map(|e| e.class));
        match result {
            Ok(provider_id) => (Decision::Delivered { provider_id }, Some(busy)),
            Err(error) => {
                let decision = self.decide(error, attempt);
                let again = self
                    .media_gone(provider, resolved.as_ref(), &decision)
                    .await;
                (again.unwrap_or(decision), Some(busy))
            }
        }
    }

    /// Takes what a send needs before the provider is asked: the circuit's
    /// admission, the recipient's pair-rate slot and a pacing slot before
    /// `deadline`. Each refusal is a hold that does not count against the
    /// message (the provider was not asked). With the admission, how long the
    /// checks took besides the pacer's wait.
    async fn clear_to_send(
        provider: &ProviderState,
        envelope: &Envelope,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(Admission, Duration), Decision> {
        let began = tokio::time::Instant::now();
        let hold = |after, class, reason: String| Decision::Retry {
            after,
            class,
            code: None,
            reason,
            counted: false,
        };
        let admission = provider.breaker.admit().map_err(|wait| {
            let reason = format!("the {} circuit is open", provider.channel.name());
            hold(wait, FailureClass::Retryable, reason)
        })?;
        let recipient = envelope.to.as_str();
        let pairs = provider.channel.recipient_limiter();
        if let Some(pairs) = pairs
            && let Err(wait) = pairs.take(recipient).await
        {
            // Avoided, not retried: messages to other recipients are not held back.
            provider.breaker.cancel(admission);
            let reason = "this recipient is at the pair rate (WHATSAPP_PAIR_RATE per 6 s)";
            return Err(hold(wait, FailureClass::Throttled, reason.to_owned()));
        }
        let asked = tokio::time::Instant::now();
        // A shared take holds the recipient for a while only: the send must
        // leave before it lapses.
        let deadline = match pairs.and_then(|p| p.send_by(asked)) {
            Some(by) => Some(deadline.map_or(by, |d| d.min(by))),
            None => deadline,
        };
        if let Some(pacer) = provider.channel.pacer()
            && !pacer.acquire_before(deadline).await
        {
            // Admitted but not sent: the circuit hears nothing of it.
            provider.breaker.cancel(admission);
            if let Some(pairs) = pairs {
                pairs.release(recipient).await;
            }
            let reason = "no pacing slot before the deadline".to_owned();
            return Err(hold(Duration::ZERO, FailureClass::Retryable, reason));
        }
        if expiry::is_past(envelope) {
            // Expired during the checks or the pacer's wait: it gives back
            // what it took, and its return records it expired, unsent.
            provider.breaker.cancel(admission);
            if let Some(pairs) = pairs {
                pairs.release(recipient).await;
            }
            let reason = "expired while waiting to be sent".to_owned();
            return Err(hold(Duration::ZERO, FailureClass::Retryable, reason));
        }
        if let Some(pairs) = pairs {
            // The pair window starts when the message leaves, not when its
            // slot was taken before the pacer's wait.
            pairs.sending(recipient);
        }
        let checks = asked - began;
        Ok((admission, checks))
    }
}

/// Reads an envelope from a queue message body: the envelope itself (raw
/// delivery) or SNS's notification JSON with the envelope in `Message`.
pub fn envelope_from_queue_body(body: &str) -> Result<Envelope, EnvelopeError> {
    // Cheap check first: only SNS's wrapper has a top-level "Type" key.
    if body.contains("\"Type\"")
        && let Ok(Value::Object(wrapper)) = serde_json::from_str::<Value>(body)
        && wrapper.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(Value::String(message)) = wrapper.get("Message")
    {
        return Envelope::from_json(message);
    }
    Envelope::from_json(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboundMessage;
    use serde_json::json;

    fn envelope_json() -> String {
        let msg =
            OutboundMessage::try_from(json!({"to": "+14155550123", "message": "hi"})).unwrap();
        Envelope::new(uuid::Uuid::now_v7(), msg, "ops").to_json()
    }

    #[test]
    fn raw_and_sns_wrapped_bodies_both_decode() {
        let raw = envelope_json();
        let wrapped = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": raw, "Timestamp": "2026-11-23T12:00:00.000Z"})
        .to_string();
        let a = envelope_from_queue_body(&raw).unwrap();
        let b = envelope_from_queue_body(&wrapped).unwrap();
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn a_wrapper_around_garbage_is_rejected() {
        let wrapped = json!({"Type": "Notification", "Message": "{\"version\": 9}"}).to_string();
        assert!(matches!(
            envelope_from_queue_body(&wrapped),
            Err(EnvelopeError::UnsupportedVersion(9))
        ));
    }

    #[tokio::test]
    async fn every_transport_gets_the_same_decisions() {
        let pipeline = Pipeline::new(
            Channels::console(),
            RetryPolicy::default(),
            PipelineLimits {
                max_attempts: 3,
                ..PipelineLimits::default()
            },
        );
        assert!(matches!(
            pipeline.deliver_payload("not json", 1).await,
            Decision::DeadLetter { .. }
        ));
        let retryable = ProviderError::new(FailureClass::Retryable, "x").with_code(Some(131_000));
        assert!(matches!(
            pipeline.decide(retryable.clone(), 2),
            Decision::Retry { counted: true, .. }
        ));
        assert!(matches!(
            pipeline.decide(retryable, 3),
            Decision::DeadLetter { .. }
        ));
        let alert = ProviderError::new(FailureClass::Configuration, "token").with_code(Some(190));
        assert!(matches!(pipeline.decide(alert, 50), Decision::Retry { .. }));
        let permanent =
            ProviderError::new(FailureClass::Permanent, "undeliverable").with_code(Some(131_026));
        assert!(matches!(
            pipeline.decide(permanent, 1),
            Decision::GiveUp { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn when_a_probe_is_due_only_one_message_is_taken() {
        let pipeline = Pipeline::new(
            Channels::console(),
            RetryPolicy::default(),
            PipelineLimits {
                circuit_cooldown: Duration::from_secs(10),
                ..PipelineLimits::default()
            },
        );
        assert_eq!(pipeline.take_limit(), None);
        pipeline.providers[0]
            .breaker
            .record(Admission::Normal, Some(FailureClass::Configuration));
        assert_eq!(pipeline.ready_in(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(pipeline.ready_in().is_zero());
        assert_eq!(pipeline.take_limit(), Some(1));
    }

    #[test]
    fn in_flight_follows_the_cap_and_the_latency() {
        let config = crate::config::WhatsAppConfig {
            access_token: crate::config::Secret::new("t"),
            phone_number_id: "1".into(),
            api_version: "v25.0".into(),
            base_url: "http://127.0.0.1:9".into(),
            request_timeout: Duration::from_secs(5),
            max_mps: 80,
            pair_rate: 1,
        };
        let client = crate::channels::whatsapp::WhatsAppClient::new(&config).unwrap();
        let pipeline = Pipeline::new(
            Channels::whatsapp(client),
            RetryPolicy::default(),
            PipelineLimits::default(),
        );
        assert_eq!(pipeline.max_in_flight(), 200);
        for _ in 0..50 {
            pipeline.providers[0].observe(Duration::from_millis(400));
        }
        // 80/s × (0.4 s + 0.25 s) + 1 = 53 (54 with the average's remainder).
        assert!((53..=54).contains(&pipeline.in_flight_target()));
        for _ in 0..50 {
            pipeline.providers[0].observe(Duration::from_secs(5));
        }
        assert_eq!(pipeline.in_flight_target(), 200, "bounded by the ceiling");
    }
}
