//! Client-side pacing: keeps each sending phone number under `WHATSAPP_MAX_MPS`,
//! so a burst from the queue does not turn into 130429 throughput errors.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Share of the configured rate the limiter actually uses. Sends leave exactly
/// one interval apart, but they reach the provider with a few milliseconds of
/// jitter: when the first of 81 sends arrives late, a sliding one-second
/// window at the provider sees 81 where the cap is 80, and answers 130429
/// (measured: bench/results/2026-11-24-delivery-before.txt). 3 % of headroom
/// absorbs 30 ms of jitter per second at any rate.
const HEADROOM: f64 = 0.97;

/// A GCRA-style limiter: each send reserves the next free slot, `1/(0.97 × mps)`
/// apart; callers wait for their slot, so concurrency does not matter.
#[derive(Debug)]
pub struct ThroughputLimiter {
    per_second: u32,
    interval: Duration,
    next_free: Mutex<Instant>,
}

impl ThroughputLimiter {
    /// A limiter allowing `max_per_second` sends per second.
    pub fn new(max_per_second: u32) -> Self {
        let per_second = max_per_second.max(1);
        Self {
            per_second,
            interval: Duration::from_secs_f64(1.0 / (f64::from(per_second) * HEADROOM)),
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
        self.acquire_before(None).await;
    }

    /// Waits for this caller's slot, unless the slot would come after
    /// `deadline`: then takes no slot and returns false at once.
    pub async fn acquire_before(&self, deadline: Option<Instant>) -> bool {
        let slot = {
            let mut next = self
                .next_free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = (*next).max(now);
            if deadline.is_some_and(|d| slot > d) {
                return false;
            }
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        true
    }
}

/// WhatsApp's pair rate: at most `per_window` messages to one recipient in any
/// `window` (Meta: about one per 6 s, error 131056 past it). A message to a
/// recipient at the limit is not held in a queue behind the others: the caller
/// is told how long to wait, and everything for other recipients flows on.
#[derive(Debug)]
pub struct RecipientLimiter {
    per_window: usize,
    window: Duration,
    /// Send times in the last window, per recipient; pruned as it goes.
    sent: Mutex<std::collections::HashMap<String, std::collections::VecDeque<Instant>>>,
    /// Map size that triggers the next sweep of stale recipients.
    sweep_at: std::sync::atomic::AtomicUsize,
}

/// Recipients held before the first sweep.
const SWEEP_MIN: usize = 1024;

impl RecipientLimiter {
    /// At most `per_window` sends to one recipient per `window`.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window: per_window.max(1) as usize,
            window,
            sent: Mutex::default(),
            sweep_at: SWEEP_MIN.into(),
        }
    }

    /// Takes a send to `recipient` now, or says how long until one is free.
    pub fn try_take(&self, recipient: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget recipients whose window has passed once the map has doubled
        // since the last sweep: it holds only recent recipients, and a sweep
        // costs O(1) per call on average, not a scan on every send.
        if sent.len() > self.sweep_at.load(std::sync::atomic::Ordering::Relaxed) {
            sent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
            self.sweep_at.store(
                (sent.len() * 2).max(SWEEP_MIN),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let times = sent.entry(recipient.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.per_window {
            times.push_back(now);
            Ok(())
        } else {
            let oldest = *times.front().expect("at the limit, so not empty");
            Err(self.window - now.duration_since(oldest))
        }
    }

    /// Moves the newest send to `recipient` to now: it was taken before the
    /// pacer's wait and is only made now, so its window starts now.
    pub fn stamp_now(&self, recipient: &str) {
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(last) = sent.get_mut(recipient).and_then(|t| t.back_mut()) {
            *last = Instant::now();
        }
    }

    /// Gives back a send taken with [`RecipientLimiter::try_take`] that was
    /// not made (no pacing slot, or the circuit refused it).
    pub fn give_back(&self, recipient: &str) {
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(times) = sent.get_mut(recipient) {
            times.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokio's timer rounds sleeps to milliseconds.
    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) <= Duration::from_millis(25)
    }

    #[tokio::test(start_paused = true)]
    async fn one_recipient_at_its_pair_rate_does_not_hold_back_another() {
        let pairs = RecipientLimiter::new(1, Duration::from_secs(6));
        assert!(pairs.try_take("+1").is_ok());
        assert_eq!(pairs.try_take("+1"), Err(Duration::from_secs(6)));
        assert!(pairs.try_take("+2").is_ok());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(pairs.try_take("+1"), Err(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(pairs.try_take("+1").is_ok());
        pairs.give_back("+1");
        assert!(
            pairs.try_take("+1").is_ok(),
            "a send not made is given back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_not_taken() {
        let limiter = ThroughputLimiter::new(10);
        let deadline = Instant::now() + Duration::from_millis(250);
        let mut sent = 0;
        while limiter.acquire_before(Some(deadline)).await {
            sent += 1;
        }
        // Slots at 0, 103 and 206 ms fit; the fourth (309 ms) does not.
        assert_eq!(sent, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backlog_counts_booked_slots_and_the_new_ones() {
        let limiter = ThroughputLimiter::new(10);
        let i = limiter.interval;
        assert_eq!(limiter.backlog(5), i * 5);
        for _ in 0..3 {
            limiter.acquire().await;
        }
        // Three slots taken at 0, i and 2i; the next is free at 3i, and "now" is 2i.
        assert!(close(limiter.backlog(1), i * 2), "{:?}", limiter.backlog(1));
    }

    #[tokio::test(start_paused = true)]
    async fn sends_are_spaced_by_the_rate() {
        let limiter = ThroughputLimiter::new(10);
        let start = Instant::now();
        for _ in 0..21 {
            limiter.acquire().await;
        }
        // 21 sends at 10/s (paced at 9.7/s): the last one is 20 intervals
        // after the first, a little over two seconds.
        assert!(close(Instant::now() - start, limiter.interval * 20));
        assert!(limiter.interval > Duration::from_millis(100));
        assert!(limiter.interval < Duration::from_millis(104));
    }
}
