//! `Idempotency-Key` support: a retried send with the same key and body gets the
//! same message id and publishes nothing new.
//!
//! Scope: one gateway process. Keys live in memory, bounded in number and age, so
//! a retry that lands on another instance or after a restart is published again.
//! On FIFO topics SNS still drops such a duplicate within its five-minute window,
//! because the envelope id is the `MessageDeduplicationId`; elsewhere the consumer
//! sees the same id twice. The README says so.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use uuid::Uuid;

/// Longest key accepted, per DESIGN.md.
pub const MAX_KEY_LEN: usize = 255;

type StoreKey = (Arc<str>, String);

/// Remembered keys: per API key id, so two clients cannot collide.
#[derive(Debug)]
pub struct IdempotencyStore {
    inner: Mutex<Inner>,
    ttl: Duration,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<StoreKey, Entry>,
    /// Insertion order, for expiry and for evicting the oldest when full.
    order: VecDeque<(Instant, StoreKey)>,
}

#[derive(Debug)]
struct Entry {
    body_digest: [u8; 32],
    created: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// A request with this key is being published; others wait for its outcome.
    InFlight(Arc<Notify>),
    /// Published under this message id.
    Done(Uuid),
}

/// What a request with an idempotency key should do.
#[derive(Debug)]
pub enum Claim {
    /// First use: publish under the reservation's id, then complete it.
    New(Reservation),
    /// Already published: answer with this id and publish nothing.
    Replay(Uuid),
    /// The key was used with another body: `422`.
    Mismatch,
}

/// A claimed key. Dropping it without [`Reservation::complete`] releases the key,
/// so a failed or cancelled publish can be retried with the same key.
#[derive(Debug)]
pub struct Reservation {
    store: Arc<IdempotencyStore>,
    key: Option<StoreKey>,
    /// The message id to publish under.
    pub id: Uuid,
}

impl IdempotencyStore {
    /// A store that remembers keys for `ttl`, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// Claims `key` for the caller `key_id` and a body with `body`.
    pub async fn claim(self: &Arc<Self>, key_id: &Arc<str>, key: &str, body: &[u8]) -> Claim {
        let body_digest: [u8; 32] = Sha256::digest(body).into();
        let store_key: StoreKey = (key_id.clone(), key.to_owned());
        loop {
            let notified = {
                let mut inner = self.lock();
                let now = Instant::now();
                self.evict(&mut inner, now);
                match inner.entries.get(&store_key) {
                    Some(e) if e.body_digest != body_digest => return Claim::Mismatch,
                    Some(Entry {
                        state: State::Done(id),
                        ..
                    }) => return Claim::Replay(*id),
                    // Created under the lock, so a notify_waiters() after it is released still wakes it.
                    Some(Entry {
                        state: State::InFlight(notify),
                        ..
                    }) => notify.clone().notified_owned(),
                    None => {
                        let entry = Entry {
                            body_digest,
                            created: now,
                            state: State::InFlight(Arc::new(Notify::new())),
                        };
                        inner.entries.insert(store_key.clone(), entry);
                        inner.order.push_back((now, store_key.clone()));
                        return Claim::New(Reservation {
                            store: self.clone(),
                            key: Some(store_key),
                            id: Uuid::now_v7(),
                        });
                    }
                }
            };
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // (every update is a single insert or remove), so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((created, _)) = inner.order.front() {
            let expired = now.duration_since(*created) >= self.ttl;
            if !expired && inner.entries.len() < self.capacity {
                break;
            }
            let (created, key) = inner.order.pop_front().expect("front exists");
            if inner
                .entries
                .get(&key)
                .is_some_and(|e| e.created == created)
            {
                inner.entries.remove(&key);
            }
        }
    }

    /// Number of keys remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn finish(&self, key: &StoreKey, published: Option<Uuid>) {
        let mut inner = self.lock();
        let notify = match inner.entries.get_mut(key) {
            Some(entry) => match (&entry.state, published) {
                (State::InFlight(notify), Some(id)) => {
                    let notify = notify.clone();
                    entry.state = State::Done(id);
                    Some(notify)
                }
                (State::InFlight(notify), None) => {
                    let notify = notify.clone();
                    inner.entries.remove(key);
                    Some(notify)
                }
                (State::Done(_), _) => None,
            },
            None => None,
        };
        drop(inner);
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }
}

impl Reservation {
    /// Records that the message was published under [`Reservation::id`].
    pub fn complete(mut self) {
        if let Some(key) = self.key.take() {
            self.store.finish(&key, Some(self.id));
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.store.finish(&key, None);
        }
    }
}

/// Checks an `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ttl_ms: u64, capacity: usize) -> Arc<IdempotencyStore> {
        Arc::new(IdempotencyStore::new(
            Duration::from_millis(ttl_ms),
            capacity,
        ))
    }

    fn caller() -> Arc<str> {
        Arc::from("ops")
    }

    #[tokio::test]
    async fn a_completed_key_replays_its_id() {
        let s = store(60_000, 10);
        let Claim::New(r) = s.claim(&caller(), "k1", b"body").await else {
            panic!("first claim is new")
        };
        let id = r.id;
        r.complete();
        assert!(matches!(s.claim(&caller(), "k1", b"body").await, Claim::Replay(x) if x == id));
    }

    #[tokio::test]
    async fn a_different_body_is_a_mismatch() {
        let s = store(60_000, 10);
        let Claim::New(r) = s.claim(&caller(), "k1", b"body").await else {
            panic!()
        };
        r.complete();
        assert!(matches!(
            s.claim(&caller(), "k1", b"other").await,
            Claim::Mismatch
        ));
    }

    #[tokio::test]
    async fn keys_are_scoped_to_the_api_key() {
        let s = store(60_000, 10);
        let Claim::New(r) = s.claim(&caller(), "k1", b"body").await else {
            panic!()
        };
        r.complete();
        assert!(matches!(
            s.claim(&Arc::from("billing"), "k1", b"other").await,
            Claim::New(_)
        ));
    }

    #[tokio::test]
    async fn an_abandoned_reservation_frees_the_key() {
        let s = store(60_000, 10);
        let Claim::New(r) = s.claim(&caller(), "k1", b"body").await else {
            panic!()
        };
        drop(r);
        assert!(s.is_empty());
        assert!(matches!(
            s.claim(&caller(), "k1", b"body").await,
            Claim::New(_)
        ));
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_outcome() {
        let s = store(60_000, 10);
        let Claim::New(r) = s.claim(&caller(), "k1", b"body").await else {
            panic!()
        };
        let id = r.id;
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.claim(&caller(), "k1", b"body").await });
        tokio::task::yield_now().await;
        r.complete();
        assert!(matches!(waiter.await.unwrap(), Claim::Replay(x) if x == id));
    }

    #[tokio::test]
    async fn keys_expire_and_the_store_stays_bounded() {
        let s = store(20, 3);
        for k in ["a", "b", "c", "d", "e"] {
            let Claim::New(r) = s.claim(&caller(), k, b"x").await else {
                panic!()
            };
            r.complete();
        }
        assert!(s.len() <= 3);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(matches!(
            s.claim(&caller(), "e", b"other").await,
            Claim::New(_)
        ));
    }

    #[test]
    fn key_format_is_checked() {
        assert!(validate_key("order-42").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
        assert!(validate_key("has space").is_err());
    }
}
