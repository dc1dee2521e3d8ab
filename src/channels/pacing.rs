//! Client-side pacing: keeps each sending phone number under `WHATSAPP_MAX_MPS`,
//! so a burst from the queue does not turn into 130429 throughput errors.
//!
//! In one process the limiters keep their state in memory. In a fleet (SQS
//! consumers with `STATUS_TABLE`) the same limiters draw on shared state
//! through two ports, [`SharedSlots`] and [`SharedPairs`], which
//! the `fleet` module implements on DynamoDB: the slots of one GCRA schedule for
//! the whole fleet, and the pair-rate window of each recipient.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

/// An error of a shared limiter's store, with its causes.
pub type SharedError = Box<dyn std::error::Error + Send + Sync>;

/// Sending slots booked from a schedule the whole fleet shares.
pub trait SharedSlots: Send + Sync + std::fmt::Debug {
    /// Books up to `want` consecutive slots, `interval` apart; answers when
    /// the first one is (wall-clock: the fleet's clocks agree, its processes'
    /// monotonic clocks do not) and how many were booked (at least one).
    fn book(
        &self,
        want: u32,
        interval: Duration,
    ) -> BoxFuture<'_, Result<(std::time::SystemTime, u32), SharedError>>;
}

/// A recipient's pair-rate window, shared by the fleet.
pub trait SharedPairs: Send + Sync + std::fmt::Debug {
    /// Takes a send to `recipient` if fewer than `per_window` were sent in
    /// the last `window` and none is pending; else says how long until one
    /// is free. The take is a pending mark until [`Self::stamp_at`] (or
    /// until it lapses, `pending` from now: its consumer died).
    fn try_take<'a>(
        &'a self,
        recipient: &'a str,
        per_window: usize,
        window: Duration,
        pending: Duration,
    ) -> BoxFuture<'a, Result<Result<(), Duration>, SharedError>>;

    /// Gives back the send taken last for `recipient` (not made).
    fn give_back<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<(), SharedError>>;

    /// Moves the send taken last for `recipient` to `at` (when it leaves).
    fn stamp_at<'a>(
        &'a self,
        recipient: &'a str,
        at: std::time::SystemTime,
    ) -> BoxFuture<'a, Result<(), SharedError>>;
}

/// A shared pair-rate window is this much longer than the provider's: it
/// starts at the send, a moment before the request reaches the provider.
const SHARED_PAIR_SLACK: Duration = Duration::from_millis(250);
/// How long a shared take holds its recipient before the send starts the
/// window; past it (a consumer died) the take lapses.
pub const SHARED_PENDING: Duration = Duration::from_secs(30);

/// A slot booked from the fleet's schedule that nobody took for this long
/// is dropped: sending it later would crowd the slots booked after it.
const STALE_SLOT: Duration = Duration::from_millis(20);
/// Most of a second's slots one booking takes (a quarter: the write cost per
/// message is 1 / (cap / 4) under load, and a consumer that dies with its
/// slots unused wastes at most a quarter of a second of the fleet's rate).
const SLICE_OF_SECOND: f64 = 0.25;
/// How long a caller waits before trying again when the shared schedule
/// cannot be reached.
const SHARED_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// While slots keep being taken, the next slice is booked when the booked
/// ones run out within this: a booking takes a round trip, and the fleet's
/// schedule only continues from a slot that has not passed yet.
const BOOK_AHEAD: Duration = Duration::from_millis(250);

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
    /// The fleet's schedule, when the limiter is shared (see [`Self::share`]).
    shared: OnceLock<Arc<Shared>>,
}

/// The local side of a shared schedule: slots booked and not yet taken.
#[derive(Debug)]
struct Shared {
    slots: Arc<dyn SharedSlots>,
    booked: Mutex<Booked>,
    /// One booking at a time; callers that find no slot wait on it.
    booking: tokio::sync::Mutex<()>,
    /// Callers waiting for a slot: how many the next booking asks for.
    waiting: AtomicUsize,
    /// A booking ahead of need is under way.
    prefetching: std::sync::atomic::AtomicBool,
    max_slice: u32,
}

/// Slots booked and not taken yet, and the slots taken in the last slice of
/// a second (the demand the next booking plans for).
#[derive(Debug, Default)]
struct Booked {
    free: VecDeque<Instant>,
    taken: VecDeque<Instant>,
}

impl ThroughputLimiter {
    /// A limiter allowing `max_per_second` sends per second.
    pub fn new(max_per_second: u32) -> Self {
        let per_second = max_per_second.max(1);
        Self {
            per_second,
            interval: Duration::from_secs_f64(1.0 / (f64::from(per_second) * HEADROOM)),
            next_free: Mutex::new(Instant::now()),
            shared: OnceLock::new(),
        }
    }

    /// Paces by the fleet's schedule `slots` from now on, instead of this
    /// process's own (once; later calls are ignored).
    pub fn share(&self, slots: Arc<dyn SharedSlots>) {
        let max_slice = (f64::from(self.per_second) * SLICE_OF_SECOND).ceil() as u32;
        let _ = self.shared.set(Arc::new(Shared {
            slots,
            booked: Mutex::default(),
            booking: tokio::sync::Mutex::new(()),
            waiting: AtomicUsize::new(0),
            prefetching: std::sync::atomic::AtomicBool::new(false),
            max_slice: max_slice.max(1),
        }));
    }

    /// True when the limiter paces by the fleet's schedule.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
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
        match self.reserve_before(deadline).await {
            Some(slot) => {
                tokio::time::sleep_until(slot).await;
                true
            }
            None => false,
        }
    }

    /// Takes this caller's slot without waiting for it (the caller sleeps
    /// until it, having done what must be done before the send), unless it
    /// would come after `deadline`: then `None`.
    async fn reserve_before(&self, deadline: Option<Instant>) -> Option<Instant> {
        if let Some(shared) = self.shared.get() {
            return shared.reserve_before(deadline, self.interval).await;
        }
        let mut next = self
            .next_free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = (*next).max(Instant::now());
        if deadline.is_some_and(|d| slot > d) {
            return None;
        }
        *next = slot + self.interval;
        Some(slot)
    }
}

/// One caller counted as waiting for a slot, until it is dropped (also when
/// its future is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    async fn reserve_before(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        interval: Duration,
    ) -> Option<Instant> {
        let _waiting = Waiting::enter(&self.waiting);
        match deadline {
            // A booking (its turn, the schedule being full) does not outlast
            // the caller's deadline either: Lambda must end in time.
            Some(d) => tokio::time::timeout_at(d, self.take_slot(deadline, interval))
                .await
                .ok()
                .flatten(),
            None => self.take_slot(None, interval).await,
        }
    }

    /// A booked slot for this caller, booking more when none is left; `None`
    /// when the next one comes after `deadline` (it stays for another
    /// caller) or the schedule cannot be reached.
    async fn take_slot(
        self: &Arc<Self>,
        deadline: Option<Instant>,
        interval: Duration,
    ) -> Option<Instant> {
        loop {
            match self.next_booked(deadline) {
                Ok(Some(slot)) => {
                    self.book_ahead(interval);
                    return Some(slot);
                }
                Ok(None) => {}
                Err(()) => return None,
            }
            let _booking = self.booking.lock().await;
            // Another caller may have booked while this one waited.
            if !self.lock().free.is_empty() {
                continue;
            }
            if let Err(e) = self.book(interval).await {
                tracing::warn!(error.message = %crate::telemetry::chain(e.as_ref()),
                    "the fleet's send schedule cannot be reached: messages wait");
                let pause = Instant::now() + SHARED_ERROR_PAUSE;
                tokio::time::sleep_until(deadline.map_or(pause, |d| d.min(pause))).await;
                return None;
            }
        }
    }

    /// Books the next slice (the caller holds the booking lock): as many
    /// slots as callers wait now and took a slot in the last slice, so a
    /// steady flow books whole slices (one write per quarter second of the
    /// cap) and a trickle one slot at a time.
    async fn book(&self, interval: Duration) -> Result<(), SharedError> {
        let recent = self.lock().taken.len();
        let want = u32::try_from(self.waiting.load(Ordering::Relaxed) + recent)
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_slice);
        let (first_at, count) = self.slots.book(want, interval).await?;
        // Not moved later when the answer came late: the next booking's
        // slots follow these.
        let first = match first_at.duration_since(std::time::SystemTime::now()) {
            Ok(ahead) => Instant::now() + ahead,
            Err(behind) => Instant::now() - behind.duration(),
        };
        self.lock()
            .free
            .extend((0..count).map(|i| first + interval * i));
        Ok(())
    }

    /// While slots keep being taken, books the next slice in the background
    /// before the booked ones run out (see [`BOOK_AHEAD`]).
    fn book_ahead(self: &Arc<Self>, interval: Duration) {
        let runs_out = |b: &Booked| {
            b.taken.len() > 1
                && b.free
                    .back()
                    .is_none_or(|last| *last < Instant::now() + BOOK_AHEAD)
        };
        if !runs_out(&self.lock()) || self.prefetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let _booking = me.booking.lock().await;
            let still = runs_out(&me.lock());
            if still && let Err(e) = me.book(interval).await {
                tracing::debug!(error.message = %crate::telemetry::chain(e.as_ref()), "booking ahead failed; the next caller books");
            }
            me.prefetching.store(false, Ordering::Release);
        });
    }

    /// The first booked slot, taken, unless it is after `deadline` (`Err`);
    /// `Ok(None)` when none is booked. Slots nobody took in time are dropped.
    fn next_booked(&self, deadline: Option<Instant>) -> Result<Option<Instant>, ()> {
        let mut booked = self.lock();
        let now = Instant::now();
        while booked.free.front().is_some_and(|s| *s + STALE_SLOT < now) {
            booked.free.pop_front();
        }
        let slice = Duration::from_secs_f64(SLICE_OF_SECOND);
        while booked.taken.front().is_some_and(|t| *t + slice < now) {
            booked.taken.pop_front();
        }
        match booked.free.front() {
            Some(slot) if deadline.is_some_and(|d| *slot > d) => Err(()),
            Some(&slot) => {
                booked.free.pop_front();
                booked.taken.push_back(slot);
                Ok(Some(slot))
            }
            None => Ok(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Booked> {
        self.booked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    /// The fleet's windows, when shared (see [`Self::share`]).
    shared: OnceLock<Arc<dyn SharedPairs>>,
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
            shared: OnceLock::new(),
        }
    }

    /// Keeps the windows in the fleet's `pairs` from now on (once).
    pub fn share(&self, pairs: Arc<dyn SharedPairs>) {
        let _ = self.shared.set(pairs);
    }

    /// Takes a send to `recipient` now, in the fleet's windows when shared,
    /// or says how long until one is free (a shared store that cannot be
    /// reached: a second, and it is logged).
    pub async fn take(&self, recipient: &str) -> Result<(), Duration> {
        let Some(shared) = self.shared.get() else {
            return self.try_take(recipient);
        };
        let window = self.window + SHARED_PAIR_SLACK;
        match shared
            .try_take(recipient, self.per_window, window, SHARED_PENDING)
            .await
        {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error.message = %crate::telemetry::chain(e.as_ref()),
                    "the fleet's pair-rate windows cannot be reached: the message waits");
                Err(SHARED_ERROR_PAUSE)
            }
        }
    }

    /// The send taken for `recipient` leaves now: its window starts now. A
    /// shared window is written in the background (a write here would make
    /// the send late for its pacing slot); until it lands, the take's
    /// pending mark keeps the recipient held.
    pub fn sending(&self, recipient: &str) {
        let Some(shared) = self.shared.get() else {
            self.stamp_now(recipient);
            return;
        };
        let (shared, recipient) = (shared.clone(), recipient.to_owned());
        let at = std::time::SystemTime::now();
        tokio::spawn(async move {
            if let Err(e) = shared.stamp_at(&recipient, at).await {
                tracing::warn!(error.message = %crate::telemetry::chain(e.as_ref()), "a pair-rate window was not started at the send time: the recipient stays held until its pending mark lapses");
            }
        });
    }

    /// The latest a send taken for a recipient may leave: a shared take is a
    /// pending mark that lapses after [`SHARED_PENDING`].
    pub fn send_by(&self, taken: Instant) -> Option<Instant> {
        self.shared
            .get()
            .map(|_| taken + SHARED_PENDING - Duration::from_secs(5))
    }

    /// Gives back the send taken for `recipient`: it was not made.
    pub async fn release(&self, recipient: &str) {
        match self.shared.get() {
            None => self.give_back(recipient),
            Some(shared) => {
                if let Err(e) = shared.give_back(recipient).await {
                    tracing::warn!(error.message = %crate::telemetry::chain(e.as_ref()), "a pair-rate slot not used was not given back");
                }
            }
        }
    }

    /// Takes a send to `recipient` now, or says how long until one is free.
    fn try_take(&self, recipient: &str) -> Result<(), Duration> {
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
    fn stamp_now(&self, recipient: &str) {
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
    fn give_back(&self, recipient: &str) {
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
