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

use serde_json::{Value, json};
use tracing::Instrument;

use crate::channels::{Channels, Provider};
use crate::config::DeliveryConfig;
use crate::contract::{Envelope, EnvelopeError};
use crate::status::StatusStore;

pub mod breaker;
pub mod decision;
mod recording;
pub mod retry;

pub use crate::channels::pacing::{RecipientLimiter, ThroughputLimiter};
pub use crate::channels::provider::{FailureClass, ProviderError};
pub use breaker::{Admission, CircuitBreaker};
pub use decision::{Ack, Decision};
pub use retry::RetryPolicy;

/// Tries at writing a delivery's status before giving up on it (50, 200, 800 ms apart).
const STATUS_WRITE_ATTEMPTS: u32 = 4;
/// Provider failures in a row that open a circuit.
const TRIP_AFTER: u32 = 5;
/// Latency assumed before the first answers: the highest Herald plans for, so
/// the first seconds fill the cap rather than trickle (the average comes down
/// within a few dozen answers when the provider is faster; the extra messages
/// only wait in the pacer, inside their lease).
const INITIAL_LATENCY: Duration = Duration::from_secs(2);
/// Time in flight beyond the call itself (pacing slot, scheduling), per delivery.
const IN_FLIGHT_SLACK: Duration = Duration::from_millis(250);
/// With no `DELIVERY_CONCURRENCY`, the ceiling is this much time at the caps:
/// enough for provider latencies up to 2 s.
const CEILING_SPAN: Duration = Duration::from_millis(2500);
/// Bounds on the automatic ceiling (memory, and the provider's patience).
const CEILING_MIN: usize = 16;
const CEILING_MAX: usize = 4096;

/// Limits of the pipeline that are not per channel.
#[derive(Debug, Clone, Copy)]
pub struct PipelineLimits {
    /// Attempts before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// Most deliveries in flight; `None`: from the caps (see [`CEILING_SPAN`]).
    pub max_in_flight: Option<usize>,
    /// How long an open circuit waits before its probe.
    pub circuit_cooldown: Duration,
}

impl Default for PipelineLimits {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_in_flight: None,
            circuit_cooldown: Duration::from_secs(30),
        }
    }
}

/// One provider: its channel, its circuit and how long its calls take.
#[derive(Debug)]
struct ProviderState {
    channel: Arc<dyn Provider>,
    breaker: CircuitBreaker,
    /// Exponentially weighted moving average of the call latency.
    latency: Mutex<Duration>,
}

impl ProviderState {
    fn latency(&self) -> Duration {
        *self
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn observe(&self, took: Duration) {
        let mut latency = self
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *latency = latency.mul_f64(0.8) + took.mul_f64(0.2);
    }
}

/// The channels, their circuits and pacing, and the retry policy.
#[derive(Debug)]
pub struct Pipeline {
    channels: Channels,
    providers: Vec<ProviderState>,
    retry: RetryPolicy,
    max_attempts: u32,
    ceiling: usize,
    /// Where `submitted` and `failed` are recorded, and opt-outs read, when
    /// a store is configured.
    statuses: Option<Arc<dyn StatusStore>>,
    /// Where a status the store would not take travels again (the gateway's
    /// topic), to be recorded by a later delivery: see [`recording`].
    status_outbox: Option<recording::Outbox>,
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
        };
        Ok(Self::new(Channels::from_config(config)?, retry, limits))
    }

    /// Records `submitted` and `failed` in `store` (the embedded database, or
    /// DynamoDB with `STATUS_TABLE`), and checks its opt-outs before each delivery.
    pub fn with_statuses(mut self, store: Arc<dyn StatusStore>) -> Self {
        self.statuses = Some(store);
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
            .map(|channel| ProviderState {
                breaker: CircuitBreaker::new(channel.name(), limits.circuit_cooldown, TRIP_AFTER),
                channel,
                latency: Mutex::new(INITIAL_LATENCY),
            })
            .collect();
        let automatic = providers
            .iter()
            .map(|p| match p.channel.pacer() {
                Some(pacer) => {
                    (f64::from(pacer.per_second()) * CEILING_SPAN.as_secs_f64()).ceil() as usize
                }
                None => CEILING_MIN * 4,
            })
            .sum::<usize>()
            .clamp(CEILING_MIN, CEILING_MAX);
        Self {
            channels,
            providers,
            retry,
            max_attempts: limits.max_attempts.max(1),
            ceiling: limits.max_in_flight.unwrap_or(automatic).max(1),
            statuses: None,
            status_outbox: None,
        }
    }

    /// Describes the channels for the startup log line.
    pub fn describe(&self) -> String {
        self.channels.describe()
    }

    /// The most deliveries a transport should hold in flight now: enough for
    /// each provider's cap at its observed latency (Little's law, with slack),
    /// never more than the ceiling.
    pub fn in_flight_target(&self) -> usize {
        let wanted: f64 = self
            .providers
            .iter()
            .map(|p| match p.channel.pacer() {
                Some(pacer) => {
                    f64::from(pacer.per_second()) * (p.latency() + IN_FLIGHT_SLACK).as_secs_f64()
                        + 1.0
                }
                None => self.ceiling as f64,
            })
            .sum();
        (wanted.ceil() as usize).clamp(1, self.ceiling)
    }

    /// The sum of the providers' rate caps per second (`None` when a provider
    /// is not paced: the console).
    pub fn max_rate(&self) -> Option<u32> {
        self.providers
            .iter()
            .map(|p| p.channel.pacer().map(ThroughputLimiter::per_second))
            .sum()
    }

    /// The most deliveries ever held in flight.
    pub fn max_in_flight(&self) -> usize {
        self.ceiling
    }

    /// How long the pacers need before `n` more sends have all had their slot
    /// (the slowest provider's; zero when none is paced).
    pub fn pacing_backlog(&self, n: usize) -> Duration {
        self.providers
            .iter()
            .filter_map(|p| p.channel.pacer().map(|pacer| pacer.backlog(n)))
            .max()
            .unwrap_or_default()
    }

    /// The longest one provider call can take (the largest timeout).
    pub fn call_timeout(&self) -> Duration {
        self.providers
            .iter()
            .map(|p| p.channel.call_timeout())
            .max()
            .unwrap_or_default()
    }

    /// How long until some provider may be sent to: zero unless every
    /// provider's circuit is open. Transports wait this long before taking
    /// messages, so queued messages do not spend attempts on an open circuit.
    pub fn ready_in(&self) -> Duration {
        self.providers
            .iter()
            .map(|p| p.breaker.wait())
            .min()
            .unwrap_or_default()
    }

    /// The most messages a transport should take now: one while no circuit is
    /// closed (the probe; the others would only spend a receive), else no limit.
    pub fn take_limit(&self) -> Option<usize> {
        let any_closed = self.providers.iter().any(|p| !p.breaker.is_open());
        (!any_closed && self.providers.iter().any(|p| p.breaker.probe_due())).then_some(1)
    }

    /// Each provider's circuit, for `/health`.
    pub fn circuits(&self) -> Value {
        Value::Array(self.providers.iter().map(|p| p.breaker.status()).collect())
    }

    /// True when some provider's circuit is not closed.
    pub fn any_circuit_open(&self) -> bool {
        self.providers.iter().any(|p| p.breaker.is_open())
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
            Ok(envelope) => self.deliver_before(&envelope, attempt, deadline).await,
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
        self.deliver_before(envelope, attempt, None).await
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
            if let Some(pending) = &envelope.pending_status {
                let decision = self.record_pending(envelope, pending).await;
                log_decision(&decision, "status");
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
            if let Some(decision) = self.opted_out(envelope, attempt).await {
                log_decision(&decision, envelope.message_type());
                self.count(envelope, &decision);
                return decision;
            }
            let decision = self.send(envelope, attempt, deadline).await;
            log_decision(&decision, envelope.message_type());
            self.count(envelope, &decision);
            self.record_status(envelope, attempt, &decision).await;
            match (&decision, envelope.failover()) {
                (
                    Decision::GiveUp {
                        code: Some(code), ..
                    },
                    Some(leg),
                ) if self
                    .channels
                    .for_channel(envelope.channel)
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

    /// Counts a decision in `herald_deliveries_total`.
    fn count(&self, envelope: &Envelope, decision: &Decision) {
        let known = decision.code().is_some_and(|code| {
            self.channels
                .for_channel(envelope.channel)
                .is_some_and(|c| c.knows_code(code))
        });
        crate::metrics::delivery(
            envelope.channel.as_str(),
            decision.action(),
            decision.code(),
            known,
        );
    }

    async fn send(
        &self,
        envelope: &Envelope,
        attempt: u32,
        deadline: Option<tokio::time::Instant>,
    ) -> Decision {
        let Some(provider) = self
            .channels
            .for_channel(envelope.channel)
            .and_then(|c| self.providers.iter().find(|p| p.channel.name() == c.name()))
        else {
            return self.decide(
                ProviderError::new(
                    FailureClass::Configuration,
                    format!(
                        "no {} channel is configured here",
                        envelope.channel.as_str()
                    ),
                ),
                attempt,
            );
        };
        let admission = match Self::clear_to_send(provider, envelope, deadline).await {
            Ok(admission) => admission,
            Err(hold) => return hold,
        };
        let started = tokio::time::Instant::now();
        let result = provider.channel.send(envelope).await;
        provider.observe(started.elapsed());
        crate::metrics::provider_call(envelope.channel.as_str(), started.elapsed().as_secs_f64());
        provider
            .breaker
            .record(admission, result.as_ref().err().map(|e| e.class));
        match result {
            Ok(provider_id) => Decision::Delivered { provider_id },
            Err(error) => self.decide(error, attempt),
        }
    }

    /// Takes what a send needs before the provider is asked: the circuit's
    /// admission, the recipient's pair-rate slot and a pacing slot before
    /// `deadline`. Each refusal is a hold that does not count against the
    /// message (the provider was not asked).
    async fn clear_to_send(
        provider: &ProviderState,
        envelope: &Envelope,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Admission, Decision> {
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
            && let Err(wait) = pairs.try_take(recipient)
        {
            // Avoided, not retried: messages to other recipients are not held back.
            provider.breaker.cancel(admission);
            let reason = "this recipient is at the pair rate (WHATSAPP_PAIR_RATE per 6 s)";
            return Err(hold(wait, FailureClass::Throttled, reason.to_owned()));
        }
        if let Some(pacer) = provider.channel.pacer()
            && !pacer.acquire_before(deadline).await
        {
            // Admitted but not sent: the circuit hears nothing of it.
            provider.breaker.cancel(admission);
            if let Some(pairs) = pairs {
                pairs.give_back(recipient);
            }
            let reason = "no pacing slot before the deadline".to_owned();
            return Err(hold(Duration::ZERO, FailureClass::Retryable, reason));
        }
        if let Some(pairs) = pairs {
            // The pair window starts when the message leaves, not when its
            // slot was taken before the pacer's wait.
            pairs.stamp_now(recipient);
        }
        Ok(admission)
    }

    /// The decision for a failed attempt: permanent failures are given up,
    /// account problems wait for an operator whatever the attempt, anything
    /// else is retried until `DELIVERY_MAX_ATTEMPTS`, then dead-lettered.
    fn decide(&self, error: ProviderError, attempt: u32) -> Decision {
        match error.class {
            FailureClass::Permanent => Decision::GiveUp {
                code: error.code,
                reason: error.message,
            },
            class if class != FailureClass::Configuration && attempt >= self.max_attempts => {
                Decision::DeadLetter {
                    reason: format!("gave up after {attempt} attempts: {}", error.message),
                }
            }
            class => Decision::Retry {
                after: self.retry.delay(class, attempt, error.retry_after),
                class,
                code: error.code,
                reason: error.message,
                // Account problems are the operator's, not the message's.
                counted: class != FailureClass::Configuration,
            },
        }
    }

    /// A snapshot for `/health`: the circuits and the in-flight target.
    pub fn health(&self) -> Value {
        json!({
            "circuits": self.circuits(),
            "inFlightTarget": self.in_flight_target(),
        })
    }
}

fn log_decision(decision: &Decision, message_type: &str) {
    let action = decision.action();
    match decision {
        Decision::Delivered { provider_id } => {
            tracing::info!(action, provider_id = %provider_id, message_type, "message delivered");
        }
        Decision::Retry {
            counted: false,
            after,
            reason,
            ..
        } => tracing::debug!(
            action, retry_in_ms = after.as_millis() as u64, error.message = %reason, "not sent: the provider's circuit is open; message kept"
        ),
        Decision::Retry {
            after,
            class: FailureClass::Configuration,
            code,
            reason,
            ..
        } => tracing::error!(
            action, error.code = code, retry_in_ms = after.as_millis() as u64, error.message = %reason,
            "account or token problem: every message will fail until an operator fixes it; message kept"
        ),
        Decision::Retry {
            after,
            class: FailureClass::Unconfirmed,
            reason,
            ..
        } => tracing::warn!(
            action, retry_in_ms = after.as_millis() as u64, error.message = %reason,
            "sent, answer unknown: the provider may have accepted the message; it will be sent again (a possible duplicate)"
        ),
        Decision::Retry {
            after,
            code,
            reason,
            ..
        } => tracing::warn!(
            action, error.code = code, retry_in_ms = after.as_millis() as u64, error.message = %reason, "delivery will be retried"
        ),
        Decision::GiveUp { code, reason } => {
            tracing::warn!(action, error.code = code, error.message = %reason, "delivery failed permanently");
        }
        Decision::DeadLetter { reason } => {
            tracing::error!(action, error.message = %reason, "sent to the dead-letter path")
        }
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
