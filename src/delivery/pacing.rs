//! Client-side pacing: keeps each sending phone number under `WHATSAPP_MAX_MPS`,
//! so a burst from the queue does not turn into 130429 throughput errors.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A GCRA-style limiter: each send reserves the next free slot, `1/mps` apart;
/// callers wait for their slot, so concurrency does not matter.
#[derive(Debug)]
pub struct ThroughputLimiter {
    per_second: u32,
    interval: Duration,
    next_free: Mutex<Instant>,
}

impl ThroughputLimiter {
    /// A limiter allowing `max_per_second` sends per second.
    pub fn new(max_per_second: u32) -> Self {
        Self {
            per_second: max_per_second.max(1),
            interval: Duration::from_secs(1) / max_per_second.max(1),
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// The rate this limiter keeps to, per second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// How long until `n` more sends would all have had their slot: the wait
    /// already booked plus `n` intervals. The embedded worker leases for at
    /// least this long, so an envelope never waits out its lease in the pacer.
    pub fn backlog(&self, n: usize) -> Duration {
        let next = *self
            .next_free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let booked = next.saturating_duration_since(Instant::now());
        booked + self.interval * u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Waits until this caller may send.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self
                .next_free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_backlog_counts_booked_slots_and_the_new_ones() {
        let limiter = ThroughputLimiter::new(10);
        assert_eq!(limiter.backlog(5), Duration::from_millis(500));
        for _ in 0..3 {
            limiter.acquire().await;
        }
        // Three slots taken at 0, 100 and 200 ms; the next is free at 300 ms,
        // and "now" is 200 ms.
        assert_eq!(limiter.backlog(1), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn sends_are_spaced_by_the_rate() {
        let limiter = ThroughputLimiter::new(10);
        let start = Instant::now();
        for _ in 0..21 {
            limiter.acquire().await;
        }
        // 21 sends at 10/s: the last one is two seconds after the first.
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }
}
