//! A circuit breaker per provider: when the provider is down (a run of 5xx or
//! timeouts) or unusable (an expired token, a missing permission), stop sending
//! for a cool-down, then let one message through as a probe before resuming.
//! Without it, every queued message spends its attempts against a provider
//! that cannot take any of them.
//!
//! Closed → Open on an alert-class failure at once, or after `trip_after`
//! retryable/unconfirmed failures in a row. Open → HalfOpen when the cool-down
//! has passed: the next delivery is the probe and the others wait. The probe's
//! success closes the circuit; its failure opens it again with twice the
//! cool-down (up to 8 times the first). Each transition is logged once.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::channels::provider::FailureClass;

/// How long to wait before asking again while the probe is in flight.
const WAIT_FOR_PROBE: Duration = Duration::from_secs(1);
/// A probe not heard of after this long (its task was cancelled, say) no
/// longer blocks the next one.
const PROBE_EXPIRES: Duration = Duration::from_secs(120);

/// One provider's circuit.
#[derive(Debug)]
pub struct CircuitBreaker {
    provider: &'static str,
    cooldown: Duration,
    trip_after: u32,
    state: Mutex<State>,
    /// Where this circuit's openings are told to the fleet, when shared.
    fleet: OnceLock<tokio::sync::mpsc::UnboundedSender<Opened>>,
}

/// A circuit's opening, as the fleet is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Until when, Unix milliseconds.
    pub until_ms: i64,
    /// Why.
    pub reason: String,
}

#[derive(Debug, Clone)]
enum State {
    Closed {
        failures_in_a_row: u32,
    },
    Open {
        until: Instant,
        cooldown: Duration,
        reason: String,
    },
    HalfOpen {
        cooldown: Duration,
        /// When the probe in flight was admitted.
        probing_since: Option<Instant>,
    },
}

/// Leave to send one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Normal,
    /// The one message sent to see whether the provider is back.
    Probe,
}

impl CircuitBreaker {
    /// A closed circuit for `provider`.
    pub fn new(provider: &'static str, cooldown: Duration, trip_after: u32) -> Self {
        Self {
            provider,
            cooldown,
            trip_after: trip_after.max(1),
            state: Mutex::new(State::Closed {
                failures_in_a_row: 0,
            }),
            fleet: OnceLock::new(),
        }
    }

    /// Tells `fleet` of every opening from now on (once).
    pub fn tell_openings(&self, fleet: tokio::sync::mpsc::UnboundedSender<Opened>) {
        let _ = self.fleet.set(fleet);
    }

    /// Opens a closed circuit because another consumer's opened, until
    /// `opened.until_ms`; then this one probes like after its own opening.
    pub fn open_from_fleet(&self, opened: &Opened) {
        let left = opened.until_ms - crate::clock::now_ms();
        let mut state = self.lock();
        if left <= 0 || !matches!(&*state, State::Closed { .. }) {
            return;
        }
        let reason = format!("opened by another consumer: {}", opened.reason);
        tracing::error!(
            provider = self.provider,
            cooldown_ms = left,
            reason = %reason,
            "circuit open: not sending to this provider until the cool-down has passed; queued messages wait without spending attempts"
        );
        *state = State::Open {
            until: Instant::now() + Duration::from_millis(left as u64),
            cooldown: self.cooldown,
            reason,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// May a message be sent now? `Err` says how long to wait.
    pub fn admit(&self) -> Result<Admission, Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        match &*state {
            State::Closed { .. } => Ok(Admission::Normal),
            State::Open { until, .. } if now < *until => Err(*until - now),
            State::Open { cooldown, .. } => {
                let cooldown = *cooldown;
                *state = State::HalfOpen {
                    cooldown,
                    probing_since: Some(now),
                };
                tracing::info!(
                    provider = self.provider,
                    "circuit half-open: sending one message to see whether the provider is back"
                );
                Ok(Admission::Probe)
            }
            State::HalfOpen {
                probing_since: Some(since),
                ..
            } if now.duration_since(*since) < PROBE_EXPIRES => Err(WAIT_FOR_PROBE),
            State::HalfOpen { cooldown, .. } => {
                let cooldown = *cooldown;
                *state = State::HalfOpen {
                    cooldown,
                    probing_since: Some(now),
                };
                Ok(Admission::Probe)
            }
        }
    }

    /// How long until a message may be sent (zero when it may be now). Does
    /// not change the state: transports ask this before taking messages.
    pub fn wait(&self) -> Duration {
        match &*self.lock() {
            State::Open { until, .. } => until.saturating_duration_since(Instant::now()),
            State::HalfOpen {
                probing_since: Some(since),
                ..
            } if since.elapsed() < PROBE_EXPIRES => WAIT_FOR_PROBE,
            _ => Duration::ZERO,
        }
    }

    /// True when the circuit is not closed but may be sent to now: the next
    /// delivery is the probe, and it should be the only one taken.
    pub fn probe_due(&self) -> bool {
        self.is_open() && self.wait().is_zero()
    }

    /// Gives back an admission that was not used (the message was not sent):
    /// a probe leaves the circuit half-open for the next one.
    pub fn cancel(&self, admission: Admission) {
        if admission == Admission::Probe {
            let mut state = self.lock();
            if let State::HalfOpen { cooldown, .. } = &*state {
                let cooldown = *cooldown;
                *state = State::HalfOpen {
                    cooldown,
                    probing_since: None,
                };
            }
        }
    }

    /// Records how an admitted attempt ended: `None` for success, else the
    /// failure's class.
    pub fn record(&self, admission: Admission, failure: Option<FailureClass>) {
        let mut state = self.lock();
        let provider_fault = failure.filter(|c| c.is_provider_fault());
        match (&mut *state, provider_fault) {
            (State::Closed { failures_in_a_row }, None) => *failures_in_a_row = 0,
            (State::Closed { failures_in_a_row }, Some(class)) => {
                *failures_in_a_row += 1;
                if class == FailureClass::Configuration || *failures_in_a_row >= self.trip_after {
                    let reason = if class == FailureClass::Configuration {
                        "an account or token problem (alert)".to_owned()
                    } else {
                        format!("{failures_in_a_row} failures in a row")
                    };
                    *state = self.open(self.cooldown, reason);
                }
            }
            (State::HalfOpen { cooldown, .. }, _) if admission == Admission::Probe => {
                let cooldown = *cooldown;
                *state = match provider_fault {
                    None => {
                        tracing::info!(
                            provider = self.provider,
                            "circuit closed: the provider answered the probe; sending resumes"
                        );
                        State::Closed {
                            failures_in_a_row: 0,
                        }
                    }
                    Some(class) => self.open(
                        (cooldown * 2).min(self.cooldown * 8),
                        format!("the probe failed ({})", class.as_str()),
                    ),
                };
            }
            // An attempt admitted before the circuit opened: its outcome is
            // already reflected by the failures that opened it.
            _ => {}
        }
    }

    fn open(&self, cooldown: Duration, reason: String) -> State {
        if let Some(fleet) = self.fleet.get() {
            let _ = fleet.send(Opened {
                until_ms: crate::clock::now_ms() + cooldown.as_millis() as i64,
                reason: reason.clone(),
            });
        }
        tracing::error!(
            provider = self.provider,
            cooldown_ms = cooldown.as_millis() as u64,
            reason = %reason,
            "circuit open: not sending to this provider until the cool-down has passed; queued messages wait without spending attempts"
        );
        State::Open {
            until: Instant::now() + cooldown,
            cooldown,
            reason,
        }
    }

    /// The circuit for `/health`: its state and, when open, why and for how long.
    pub fn status(&self) -> Value {
        match &*self.lock() {
            State::Closed { .. } => json!({ "provider": self.provider, "circuit": "closed" }),
            State::Open { until, reason, .. } => json!({
                "provider": self.provider,
                "circuit": "open",
                "reason": reason,
                "retryInSeconds": until.saturating_duration_since(Instant::now()).as_secs_f64(),
            }),
            State::HalfOpen { .. } => json!({ "provider": self.provider, "circuit": "half-open" }),
        }
    }

    /// True unless the circuit is closed.
    pub fn is_open(&self) -> bool {
        !matches!(&*self.lock(), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new("test", Duration::from_secs(10), 3)
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_of_failures_opens_and_a_probe_closes() {
        let b = breaker();
        for _ in 0..2 {
            let a = b.admit().unwrap();
            b.record(a, Some(FailureClass::Retryable));
        }
        assert!(!b.is_open());
        let a = b.admit().unwrap();
        b.record(a, Some(FailureClass::Unconfirmed));
        assert!(b.is_open());
        assert_eq!(b.admit(), Err(Duration::from_secs(10)));

        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(), Ok(Admission::Probe));
        // Only one probe at a time.
        assert!(b.admit().is_err());
        b.record(Admission::Probe, None);
        assert!(!b.is_open());
        assert_eq!(b.admit(), Ok(Admission::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn an_alert_opens_at_once_and_a_failed_probe_doubles_the_cooldown() {
        let b = breaker();
        b.record(Admission::Normal, Some(FailureClass::Configuration));
        assert!(b.is_open());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(), Ok(Admission::Probe));
        b.record(Admission::Probe, Some(FailureClass::Configuration));
        assert_eq!(b.admit(), Err(Duration::from_secs(20)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_never_heard_of_does_not_block_for_ever() {
        let b = breaker();
        b.record(Admission::Normal, Some(FailureClass::Configuration));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(), Ok(Admission::Probe));
        // Its task is cancelled: no record. Later, another probe may go.
        tokio::time::advance(PROBE_EXPIRES).await;
        assert_eq!(b.admit(), Ok(Admission::Probe));
    }

    #[test]
    fn permanent_failures_and_rate_limits_do_not_count() {
        let b = breaker();
        for _ in 0..10 {
            b.record(Admission::Normal, Some(FailureClass::Permanent));
            b.record(Admission::Normal, Some(FailureClass::Throttled));
        }
        assert!(!b.is_open());
        b.record(Admission::Normal, Some(FailureClass::Retryable));
        b.record(Admission::Normal, Some(FailureClass::Retryable));
        b.record(Admission::Normal, None);
        b.record(Admission::Normal, Some(FailureClass::Retryable));
        assert!(!b.is_open(), "a success resets the run");
    }
}
