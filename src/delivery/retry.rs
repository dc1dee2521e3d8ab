//! When to try a failed delivery again: exponential backoff with jitter, slower
//! for rate limits and slowest for account problems, never sooner than the
//! server's `Retry-After`.

use std::time::Duration;

use crate::channels::provider::FailureClass;

/// The backoff schedule, as data.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before the second attempt; doubles with each attempt.
    pub base: Duration,
    /// Longest delay for a retryable or throttled failure.
    pub max: Duration,
    /// Delay for configuration failures (token, permissions): slow, because every
    /// message fails alike until an operator acts.
    pub configuration: Duration,
    /// Least delay after a rate-limit error. WhatsApp's pair limit is about one
    /// message per six seconds to the same user.
    pub throttled_floor: Duration,
    /// Least delay after an unconfirmed send (the provider may have the
    /// message): long enough for a status webhook to arrive first, once there is one.
    pub unconfirmed_floor: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
            configuration: Duration::from_secs(300),
            throttled_floor: Duration::from_secs(6),
            unconfirmed_floor: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt after `attempt` (1-based) failed.
    /// Jitter spreads retries of a burst so they do not return together.
    pub fn delay(
        &self,
        class: FailureClass,
        attempt: u32,
        retry_after: Option<Duration>,
    ) -> Duration {
        let exponential = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let computed = match class {
            FailureClass::Configuration => self.configuration,
            FailureClass::Retryable
            | FailureClass::Permanent
            | FailureClass::Throttled
            | FailureClass::Unconfirmed => exponential,
        };
        // Equal jitter: half fixed, half random, so the delay never collapses to zero.
        let half = computed / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        // Floors apply after the jitter: they are promises (a rate limit's
        // window; a minute before an unconfirmed message is sent again).
        let floor = match class {
            FailureClass::Throttled => self.throttled_floor,
            FailureClass::Unconfirmed => self.unconfirmed_floor,
            _ => Duration::ZERO,
        };
        jittered.max(floor).max(retry_after.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_bounds() {
        let p = RetryPolicy::default();
        for attempt in 1..=12 {
            let d = p.delay(FailureClass::Retryable, attempt, None);
            let full = (p.base * 2u32.pow(attempt - 1)).min(p.max);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        assert!(
            p.delay(FailureClass::Retryable, 1, Some(Duration::from_secs(30)))
                >= Duration::from_secs(30)
        );
    }

    #[test]
    fn rate_limits_wait_at_least_the_pair_window_and_account_problems_wait_long() {
        let p = RetryPolicy::default();
        assert!(p.delay(FailureClass::Throttled, 1, None) >= Duration::from_secs(6));
        assert!(p.delay(FailureClass::Configuration, 1, None) >= Duration::from_secs(150));
        for _ in 0..100 {
            assert!(p.delay(FailureClass::Unconfirmed, 1, None) >= Duration::from_secs(60));
        }
    }
}
