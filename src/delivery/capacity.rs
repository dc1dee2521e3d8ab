//! How much the pipeline asks of the transports: deliveries in flight from the
//! caps and each provider's observed latency, the pacing backlog, and what the
//! circuits allow (how long to wait, how many to take), with the `/health`
//! snapshot of both.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{CircuitBreaker, Pipeline, ProviderState, ThroughputLimiter};
use crate::channels::Provider;

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

impl ProviderState {
    pub(super) fn new(channel: Arc<dyn Provider>, cooldown: Duration) -> Self {
        Self {
            breaker: Arc::new(CircuitBreaker::new(channel.name(), cooldown, TRIP_AFTER)),
            channel,
            latency: Mutex::new(INITIAL_LATENCY),
        }
    }

    pub(super) fn latency(&self) -> Duration {
        *self
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn observe(&self, took: Duration) {
        let mut latency = self
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *latency = latency.mul_f64(0.8) + took.mul_f64(0.2);
    }
}

/// The ceiling on deliveries in flight with no `DELIVERY_CONCURRENCY`:
/// [`CEILING_SPAN`] at the providers' caps, within bounds.
pub(super) fn automatic_ceiling(providers: &[ProviderState]) -> usize {
    providers
        .iter()
        .map(|p| match p.channel.pacer() {
            Some(pacer) => {
                (f64::from(pacer.per_second()) * CEILING_SPAN.as_secs_f64()).ceil() as usize
            }
            None => CEILING_MIN * 4,
        })
        .sum::<usize>()
        .clamp(CEILING_MIN, CEILING_MAX)
}

impl Pipeline {
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

    /// A snapshot for `/health`: the circuits and the in-flight target.
    pub fn health(&self) -> Value {
        json!({
            "circuits": self.circuits(),
            "inFlightTarget": self.in_flight_target(),
        })
    }
}
