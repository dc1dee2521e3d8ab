//! A per-API-key request rate limit (`RATE_LIMIT_PER_KEY`), so one noisy client
//! cannot take the whole gateway's publishing capacity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::ApiKey;

/// One token bucket per configured key; the map is built once and never
/// changes, so requests for different keys never contend.
#[derive(Debug)]
pub struct KeyRateLimiter {
    per_second: f64,
    buckets: HashMap<Arc<str>, Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refreshed: Instant,
}

impl KeyRateLimiter {
    /// `per_second` requests per second per key, with a burst of the same size.
    pub fn new(keys: &[ApiKey], per_second: u32) -> Self {
        let now = Instant::now();
        let buckets = keys
            .iter()
            .map(|k| {
                (
                    Arc::from(k.id.as_str()),
                    Mutex::new(Bucket {
                        tokens: f64::from(per_second),
                        refreshed: now,
                    }),
                )
            })
            .collect();
        Self {
            per_second: f64::from(per_second),
            buckets,
        }
    }

    /// Takes one token for `key_id`; on refusal, says how long until one is free.
    pub fn check(&self, key_id: &str) -> Result<(), Duration> {
        match self.take_up_to(key_id, 1) {
            (1, _) => Ok(()),
            (_, wait) => Err(wait),
        }
    }

    /// Takes up to `n` tokens for `key_id` (one per message: a batch counts
    /// its entries). Returns how many were granted and, when fewer than `n`,
    /// how long until the rest would be.
    pub fn take_up_to(&self, key_id: &str, n: usize) -> (usize, Duration) {
        let Some(bucket) = self.buckets.get(key_id) else {
            return (n, Duration::ZERO);
        };
        let mut b = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(b.refreshed).as_secs_f64() * self.per_second;
        b.tokens = (b.tokens + refill).min(self.per_second);
        b.refreshed = now;
        let granted = (b.tokens.floor() as usize).min(n);
        b.tokens -= granted as f64;
        // The bucket never holds more than a second's worth: a client told to
        // come back for more than that would find only a second's worth.
        let missing = ((n - granted) as f64).min(self.per_second);
        let wait = if n > granted {
            Duration::from_secs_f64((missing - b.tokens).max(0.0) / self.per_second)
        } else {
            Duration::ZERO
        };
        (granted, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn a_key_over_its_rate_is_refused_and_others_are_not() {
        let keys = [
            ApiKey {
                id: "a".into(),
                key: Secret::new("k1"),
            },
            ApiKey {
                id: "b".into(),
                key: Secret::new("k2"),
            },
        ];
        let limiter = KeyRateLimiter::new(&keys, 2);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        assert!(limiter.check("b").is_ok());
        // A batch takes what is left and learns when the rest would be free.
        let (granted, wait) = limiter.take_up_to("b", 5);
        assert_eq!(granted, 1);
        // Four more are missing, but the bucket holds two: wait for two.
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }
}
