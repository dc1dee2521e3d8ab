//! `Idempotency-Key` support: a retried send with the same key and body gets the
//! same message id, and publishes nothing new once the first attempt succeeded.
//!
//! The message id is bound to (API key id, `Idempotency-Key`) at the first
//! attempt and kept whatever that attempt's outcome: a publish that failed or
//! whose outcome is unknown (a timeout: SNS may have stored it) leaves the key
//! *unsettled*, and the retry publishes again **under the same id**. So a FIFO
//! topic drops the copy (the id is its deduplication id), the embedded queue
//! refuses it (see `embedded::store`), and any consumer can recognise it.
//!
//! Memory: each API key id has its own capacity (`IDEMPOTENCY_MAX_KEYS`), so one
//! tenant's traffic never evicts another's keys; a key whose request is still
//! in flight is never evicted (a full table of in-flight keys answers `503`);
//! the expiry index holds exactly the live entries.
//!
//! Scope: with `STATUS_TABLE` set, the fleet. A key this process has not
//! seen published is claimed in DynamoDB ([`crate::fleet::keys`]) before
//! publishing: a retry that lands on another gateway, or after a restart, gets
//! the first attempt's id and answer, waits for an attempt still in flight
//! elsewhere, and is never published twice. This table stays the fast path:
//! a replay of a key published here costs no DynamoDB call. Without
//! `STATUS_TABLE` (the embedded default: one gateway owns the queue) the
//! scope is this process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::fleet::keys::{FleetKeys, SharedClaim};
use crate::gateway::error::ApiError;

/// Longest `Idempotency-Key` accepted: 255 characters.
pub const MAX_KEY_LEN: usize = 255;
/// Most bytes of stored batch answers per API key id; past it the oldest
/// settled keys are forgotten first (a 1000-entry answer is about 90 KB).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Remembered keys, per API key id.
#[derive(Debug)]
pub struct IdempotencyStore {
    tenants: Mutex<HashMap<Arc<str>, Tenant>>,
    ttl: Duration,
    capacity: usize,
    /// The fleet's keys, with `STATUS_TABLE`.
    fleet: Option<Arc<FleetKeys>>,
}

/// One API key id's keys.
#[derive(Debug, Default)]
struct Tenant {
    entries: HashMap<String, Entry>,
    /// Creation order (time, then a sequence number), for expiry and eviction.
    /// Holds one item per entry, removed with it.
    order: BTreeMap<(Instant, u64), String>,
    next_seq: u64,
    /// Bytes of the batch answers held in `entries`.
    response_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    body_digest: [u8; 32],
    created: Instant,
    seq: u64,
    /// The message id, bound at the first attempt.
    id: Uuid,
    state: State,
    /// Rate-limit tokens the attempts with this key have taken (a batch's
    /// granted entries), so a retry takes only what is still missing.
    granted: Option<usize>,
}

#[derive(Debug)]
enum State {
    /// A request with this key is publishing; others wait for its outcome.
    InFlight(Arc<Notify>),
    /// Published under the entry's id; for a batch, with the response body
    /// that every replay answers.
    Published(Option<Arc<[u8]>>),
    /// An attempt failed or its outcome is unknown; the next one publishes
    /// again under the same id.
    Unsettled,
}

/// What a request with an idempotency key should do.
#[derive(Debug)]
pub enum Claim {
    /// Publish under the reservation's id (a first attempt, or a retry of an
    /// unsettled one), then complete it.
    New(Reservation),
    /// Already published: answer with this id and publish nothing.
    Replay(Uuid),
    /// Already answered (a batch): answer with these bytes and publish nothing.
    ReplayResponse(Arc<[u8]>),
    /// The key was used with another body: `422`.
    Mismatch,
    /// This API key id's table is full of requests still in flight: `503`.
    Full,
}

/// The local claim of a key, with its body's digest for the fleet's.
struct Local {
    claim: Claim,
    digest: [u8; 32],
}

/// What a request does about its `Idempotency-Key`, once a key reused with
/// another body and a table full of requests in flight are refused.
#[derive(Debug)]
pub enum Keyed {
    /// Publish: under the reservation's id, or a new one when the request
    /// sent no key.
    Publish(Option<Reservation>),
    /// Already published: answer with this id and publish nothing.
    Replay(Uuid),
    /// Already answered (a batch): answer with these bytes and publish nothing.
    ReplayResponse(Arc<[u8]>),
}

/// A claimed key. Dropping it without [`Reservation::complete`] leaves the key
/// unsettled: the next attempt with it publishes again under the same id.
#[derive(Debug)]
pub struct Reservation {
    store: Arc<IdempotencyStore>,
    key: Option<(Arc<str>, String)>,
    /// Claimed in the fleet too, under this owner token: published or
    /// released there when settled.
    shared: Option<Uuid>,
    /// The message id to publish under.
    pub id: Uuid,
    /// True when an earlier attempt with this key failed or its outcome was
    /// lost: this one may be republishing what already went out.
    pub retry: bool,
    /// Rate-limit tokens earlier attempts with this key took; `None` when no
    /// attempt was counted (a retry of an uncounted attempt is limited like a
    /// first one).
    pub granted_before: Option<usize>,
}

impl IdempotencyStore {
    /// A store that remembers keys for `ttl`, at most `capacity` per API key id.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            tenants: Mutex::default(),
            ttl,
            capacity: capacity.max(1),
            fleet: None,
        }
    }

    /// Claims keys across the fleet through `fleet` as well.
    #[must_use]
    pub fn with_fleet(mut self, fleet: FleetKeys) -> Self {
        self.fleet = Some(Arc::new(fleet));
        self
    }

    /// Claims `key` for the caller `key_id` and a body with `body`.
    pub async fn claim(self: &Arc<Self>, key_id: &Arc<str>, key: &str, body: &[u8]) -> Claim {
        self.claim_local(key_id, key, body).await.claim
    }

    async fn claim_local(self: &Arc<Self>, key_id: &Arc<str>, key: &str, body: &[u8]) -> Local {
        let body_digest: [u8; 32] = Sha256::digest(body).into();
        let done = |claim| Local {
            claim,
            digest: body_digest,
        };
        loop {
            let notified = {
                let mut tenants = self.lock();
                let now = Instant::now();
                let tenant = tenants.entry(key_id.clone()).or_default();
                tenant.expire(now, self.ttl);
                while tenant.response_bytes > MAX_RESPONSE_BYTES && tenant.evict_oldest_settled() {}
                match tenant.entries.get_mut(key) {
                    Some(e) if e.body_digest != body_digest => return done(Claim::Mismatch),
                    Some(e) => match &e.state {
                        State::Published(None) => return done(Claim::Replay(e.id)),
                        State::Published(Some(body)) => {
                            return done(Claim::ReplayResponse(body.clone()));
                        }
                        // Created under the lock, so a notify_waiters() after it is released still wakes it.
                        State::InFlight(notify) => notify.clone().notified_owned(),
                        State::Unsettled => {
                            e.state = State::InFlight(Arc::new(Notify::new()));
                            let mut reservation = self.reservation(key_id, key, e.id);
                            reservation.retry = true;
                            reservation.granted_before = e.granted;
                            return done(Claim::New(reservation));
                        }
                    },
                    None => {
                        if tenant.entries.len() >= self.capacity && !tenant.evict_oldest_settled() {
                            return done(Claim::Full);
                        }
                        let id = Uuid::now_v7();
                        tenant.insert(key, body_digest, now, id);
                        return done(Claim::New(self.reservation(key_id, key, id)));
                    }
                }
            };
            notified.await;
        }
    }

    /// Claims the request's `key`, if it sent one, as [`Self::claim`] does,
    /// then in the fleet when this process has not seen it published (see
    /// the module's docs), waiting for an attempt elsewhere until `deadline`.
    /// A key reused with another body is `422`, a full table `503`, a key
    /// still in flight elsewhere at the deadline `409`.
    pub async fn claim_if_keyed(
        self: &Arc<Self>,
        key_id: &Arc<str>,
        key: Option<&str>,
        body: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<Keyed, ApiError> {
        let Some(key) = key else {
            return Ok(Keyed::Publish(None));
        };
        let local = self.claim_local(key_id, key, body).await;
        match local.claim {
            Claim::New(reservation) => match &self.fleet {
                Some(fleet) => {
                    reservation
                        .claim_shared(fleet, &local.digest, deadline)
                        .await
                }
                None => Ok(Keyed::Publish(Some(reservation))),
            },
            Claim::Replay(id) => Ok(Keyed::Replay(id)),
            Claim::ReplayResponse(response) => Ok(Keyed::ReplayResponse(response)),
            Claim::Mismatch => Err(ApiError::IdempotencyMismatch),
            Claim::Full => Err(ApiError::IdempotencyStoreFull),
        }
    }

    fn reservation(self: &Arc<Self>, key_id: &Arc<str>, key: &str, id: Uuid) -> Reservation {
        Reservation {
            store: self.clone(),
            key: Some((key_id.clone(), key.to_owned())),
            shared: None,
            id,
            retry: false,
            granted_before: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Tenant>> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // (every update keeps entries and order in step before any call that
        // could panic), so a poisoned lock is usable.
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of keys remembered, over all API key ids (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().values().map(|t| t.entries.len()).sum()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items in the expiry index, over all API key ids: equal to [`Self::len`]
    /// (a test checks that memory follows the live entries).
    pub fn index_len(&self) -> usize {
        self.lock().values().map(|t| t.order.len()).sum()
    }

    /// Binds the entry of `key` to `id` (the fleet's id for it).
    fn rebind(&self, key_id: &Arc<str>, key: &str, id: Uuid) {
        if let Some(entry) = self
            .lock()
            .get_mut(key_id)
            .and_then(|t| t.entries.get_mut(key))
        {
            entry.id = id;
        }
    }

    /// Forgets `key` (the fleet says it belongs to another body).
    fn forget(&self, key_id: &Arc<str>, key: &str) {
        let mut tenants = self.lock();
        if let Some(tenant) = tenants.get_mut(key_id) {
            let notify = match tenant.entries.get(key).map(|e| &e.state) {
                Some(State::InFlight(notify)) => Some(notify.clone()),
                _ => None,
            };
            tenant.remove(key);
            drop(tenants);
            if let Some(notify) = notify {
                notify.notify_waiters();
            }
        }
    }

    fn finish(&self, key_id: &Arc<str>, key: &str, published: Option<Option<Arc<[u8]>>>) {
        let mut tenants = self.lock();
        let Some(tenant) = tenants.get_mut(key_id) else {
            return;
        };
        let Some(entry) = tenant.entries.get_mut(key) else {
            return;
        };
        if let Some(Some(response)) = &published {
            tenant.response_bytes += response.len();
        }
        let next = match published {
            Some(response) => State::Published(response),
            None => State::Unsettled,
        };
        if let State::InFlight(notify) = std::mem::replace(&mut entry.state, next) {
            drop(tenants);
            notify.notify_waiters();
        }
    }
}

impl Tenant {
    fn insert(&mut self, key: &str, body_digest: [u8; 32], now: Instant, id: Uuid) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert((now, seq), key.to_owned());
        self.entries.insert(
            key.to_owned(),
            Entry {
                body_digest,
                created: now,
                seq,
                id,
                state: State::InFlight(Arc::new(Notify::new())),
                granted: None,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&(e.created, e.seq));
            if let State::Published(Some(response)) = &e.state {
                self.response_bytes -= response.len();
            }
        }
    }

    fn in_flight(&self, key: &str) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| matches!(e.state, State::InFlight(_)))
    }

    /// Forgets entries older than `ttl`, except those still in flight.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        let expired: Vec<String> = self
            .order
            .iter()
            .take_while(|((created, _), _)| now.duration_since(*created) >= ttl)
            .filter(|(_, key)| !self.in_flight(key))
            .map(|(_, key)| key.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }

    /// Forgets the oldest published entry, else the oldest unsettled one
    /// (whose retry would then get a new id: logged); false when every entry
    /// is in flight.
    fn evict_oldest_settled(&mut self) -> bool {
        let oldest_with = |want: fn(&State) -> bool| {
            self.order
                .values()
                .find(|key| self.entries.get(*key).is_some_and(|e| want(&e.state)))
                .cloned()
        };
        let published = oldest_with(|s| matches!(s, State::Published(_)));
        let victim = published.or_else(|| {
            let unsettled = oldest_with(|s| matches!(s, State::Unsettled));
            if unsettled.is_some() {
                tracing::warn!(
                    "idempotency table full of unsettled keys: forgetting the oldest; its retry will be a new message (raise IDEMPOTENCY_MAX_KEYS)"
                );
            }
            unsettled
        });
        match victim {
            Some(key) => {
                self.remove(&key);
                true
            }
            None => false,
        }
    }
}

impl Reservation {
    /// Records that the attempts with this key have now taken `granted`
    /// rate-limit tokens in all, before anything is published: a retry after
    /// this attempt is dropped takes only the tokens still missing.
    pub fn record_granted(&self, granted: usize) {
        if let Some((key_id, key)) = &self.key
            && let Some(entry) = self
                .store
                .lock()
                .get_mut(key_id)
                .and_then(|t| t.entries.get_mut(key))
        {
            entry.granted = Some(granted);
        }
    }

    /// Records that the message was published under [`Reservation::id`].
    pub async fn complete(self) {
        self.settle(None).await;
    }

    /// Records that the request was answered with `response`, which every
    /// replay gets (a batch: its results and ids).
    pub async fn complete_with(self, response: Arc<[u8]>) {
        self.settle(Some(response)).await;
    }

    async fn settle(mut self, response: Option<Arc<[u8]>>) {
        let Some((key_id, key)) = self.key.take() else {
            return;
        };
        self.store.finish(&key_id, &key, Some(response.clone()));
        if let (Some(owner), Some(fleet)) = (self.shared, self.store.fleet.clone()) {
            // Published whatever this write does, and written whatever
            // happens to the request (a timeout drops its future): a key
            // left in flight there lapses after its lease, and a retry
            // elsewhere then publishes again under the same id.
            tokio::spawn(async move {
                let mut pause = Duration::from_millis(100);
                for _ in 0..5 {
                    match fleet
                        .published(&key_id, &key, owner, response.as_deref())
                        .await
                    {
                        Ok(()) => return,
                        Err(e) => tracing::warn!(
                            error.message = %crate::telemetry::chain(&e),
                            "idempotency key published, but the fleet's record of it was not written yet"
                        ),
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                tracing::error!(
                    "idempotency key published, but the fleet's record of it was never written: a retry on another gateway after its lease may publish it again under the same id"
                );
            });
        }
    }

    /// Claims the key in the fleet; what the fleet says decides.
    async fn claim_shared(
        mut self,
        fleet: &FleetKeys,
        digest: &[u8; 32],
        deadline: tokio::time::Instant,
    ) -> Result<Keyed, ApiError> {
        let (key_id, key) = self.key.clone().expect("a fresh reservation holds its key");
        let claim = fleet.claim(&key_id, &key, digest, self.id, deadline).await;
        match claim.map_err(ApiError::FleetUnavailable)? {
            SharedClaim::Mine { id, retry, owner } => {
                self.store.rebind(&key_id, &key, id);
                self.shared = Some(owner);
                self.id = id;
                self.retry |= retry;
                Ok(Keyed::Publish(Some(self)))
            }
            SharedClaim::Published { id, response } => {
                self.id = id;
                self.store.rebind(&key_id, &key, id);
                let response = response.map(Arc::<[u8]>::from);
                let answer = match &response {
                    Some(r) => Keyed::ReplayResponse(r.clone()),
                    None => Keyed::Replay(id),
                };
                self.key = None;
                self.store.finish(&key_id, &key, Some(response));
                Ok(answer)
            }
            SharedClaim::Mismatch => {
                self.key = None;
                self.store.forget(&key_id, &key);
                Err(ApiError::IdempotencyMismatch)
            }
            SharedClaim::InFlight { retry_after } => {
                self.key = None;
                self.store.forget(&key_id, &key);
                Err(ApiError::IdempotencyInFlight { retry_after })
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((key_id, key)) = self.key.take() {
            self.store.finish(&key_id, &key, None);
            if let (Some(owner), Some(fleet), Ok(runtime)) = (
                self.shared,
                self.store.fleet.clone(),
                tokio::runtime::Handle::try_current(),
            ) {
                // Best effort: a claim not released lapses after its lease.
                runtime.spawn(async move {
                    if let Err(e) = fleet.unsettled(&key_id, &key, owner).await {
                        tracing::warn!(error.message = %crate::telemetry::chain(&e), "idempotency key not released in the fleet; it lapses after its lease");
                    }
                });
            }
        }
    }
}

/// How long a request waits for its key's attempt in flight on another
/// gateway: half its time, leaving the other half to publish.
pub fn key_deadline(state: &crate::gateway::AppState) -> tokio::time::Instant {
    tokio::time::Instant::now() + state.request_timeout / 2
}

/// The request's `Idempotency-Key`, checked, if it sent one.
pub fn idempotency_key(
    headers: &axum::http::HeaderMap,
) -> Result<Option<&str>, crate::gateway::error::ApiError> {
    use crate::gateway::error::ApiError;
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidHeader("Idempotency-Key must be visible ASCII".into()))?;
    validate_key(key).map_err(|e| ApiError::InvalidHeader(e.to_string()))?;
    Ok(Some(key))
}

/// Checks an `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), InvalidKey> {
    if key.is_empty() {
        Err(InvalidKey::Empty)
    } else if key.len() > MAX_KEY_LEN {
        Err(InvalidKey::TooLong(key.len()))
    } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
        Err(InvalidKey::NotVisibleAscii)
    } else {
        Ok(())
    }
}

/// Why an `Idempotency-Key` is refused. Every variant says the same to the
/// client (the `400`'s detail): the rule the key breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    /// The header is empty.
    #[error("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters")]
    Empty,
    /// Longer than `MAX_KEY_LEN` bytes (its length).
    #[error("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters")]
    TooLong(usize),
    /// A space, a control character or non-ASCII.
    #[error("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters")]
    NotVisibleAscii,
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
        r.complete().await;
        assert!(matches!(s.claim(&caller(), "k1", b"body").await, Claim::Replay(x) if x == id));
    }

    #[tokio::test]
    async fn a_different_body_is_a_mismatch() {
        let s = store(60_000, 10);
        let Claim::New(r) = s.claim(&caller(), "k1", b"body").await else {
            panic!()
        };
        r.complete().await;
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
        r.complete().await;
        assert!(matches!(
            s.claim(&Arc::from("billing"), "k1", b"other").await,
            Claim::New(_)
        ));
    }

    #[tokio::test]
    async fn an_abandoned_reservation_keeps_the_id_for_the_retry() {
        let s = store(60_000, 10);
        let Claim::New(r) = s.claim(&caller(), "k1", b"body").await else {
            panic!()
        };
        let first = r.id;
        drop(r);
        assert_eq!(s.len(), 1);
        let Claim::New(retry) = s.claim(&caller(), "k1", b"body").await else {
            panic!("an unsettled key is claimed again")
        };
        assert_eq!(
            retry.id, first,
            "every retry carries the first attempt's id"
        );
        retry.complete().await;
        assert!(matches!(s.claim(&caller(), "k1", b"body").await, Claim::Replay(x) if x == first));
        assert!(matches!(
            s.claim(&caller(), "k1", b"other").await,
            Claim::Mismatch
        ));
    }

    #[tokio::test]
    async fn one_tenant_cannot_evict_another_tenants_keys() {
        let s = store(60_000, 3);
        let Claim::New(r) = s.claim(&caller(), "mine", b"body").await else {
            panic!()
        };
        let id = r.id;
        r.complete().await;
        let other: Arc<str> = Arc::from("billing");
        for i in 0..100 {
            let Claim::New(r) = s.claim(&other, &format!("k{i}"), b"x").await else {
                panic!()
            };
            r.complete().await;
        }
        assert!(matches!(s.claim(&caller(), "mine", b"body").await, Claim::Replay(x) if x == id));
    }

    #[tokio::test]
    async fn keys_in_flight_are_never_evicted() {
        let s = store(60_000, 2);
        let Claim::New(a) = s.claim(&caller(), "a", b"x").await else {
            panic!()
        };
        let Claim::New(b) = s.claim(&caller(), "b", b"x").await else {
            panic!()
        };
        // Both in flight and the table full: a third key cannot be remembered.
        assert!(matches!(s.claim(&caller(), "c", b"x").await, Claim::Full));
        a.complete().await;
        // Now "a" (settled) is evicted for "c"; "b" is still in flight and stays.
        let Claim::New(c) = s.claim(&caller(), "c", b"x").await else {
            panic!()
        };
        c.complete().await;
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.claim(&caller(), "b", b"x").await });
        tokio::task::yield_now().await;
        let b_id = b.id;
        b.complete().await;
        assert!(matches!(waiter.await.unwrap(), Claim::Replay(x) if x == b_id));
    }

    #[tokio::test]
    async fn published_keys_are_forgotten_before_unsettled_ones() {
        let s = store(60_000, 2);
        let Claim::New(unsettled) = s.claim(&caller(), "unsettled", b"x").await else {
            panic!()
        };
        let kept = unsettled.id;
        drop(unsettled);
        let Claim::New(published) = s.claim(&caller(), "published", b"x").await else {
            panic!()
        };
        published.complete().await;
        let Claim::New(new) = s.claim(&caller(), "new", b"x").await else {
            panic!()
        };
        new.complete().await;
        let Claim::New(retry) = s.claim(&caller(), "unsettled", b"x").await else {
            panic!()
        };
        assert_eq!(retry.id, kept, "the unsettled key kept its id");
    }

    #[tokio::test]
    async fn stored_batch_answers_are_counted_and_given_back() {
        let s = store(60_000, 2);
        for k in ["a", "b", "c"] {
            let Claim::New(r) = s.claim(&caller(), k, b"x").await else {
                panic!()
            };
            r.complete_with(Arc::from(&b"0123456789"[..])).await;
        }
        let tenants = s.lock();
        let tenant = &tenants[&caller()];
        assert_eq!(tenant.entries.len(), 2);
        assert_eq!(
            tenant.response_bytes, 20,
            "the evicted answer was given back"
        );
    }

    #[tokio::test]
    async fn memory_follows_the_live_entries() {
        let s = store(60_000, 50);
        for i in 0..10_000 {
            // Failed keyed sends (the reservation dropped), as under an outage.
            let Claim::New(r) = s.claim(&caller(), &format!("k{i}"), b"x").await else {
                panic!()
            };
            drop(r);
        }
        assert_eq!(s.len(), 50);
        assert_eq!(s.index_len(), 50);
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
        r.complete().await;
        assert!(matches!(waiter.await.unwrap(), Claim::Replay(x) if x == id));
    }

    #[tokio::test]
    async fn keys_expire_and_the_store_stays_bounded() {
        let s = store(20, 3);
        for k in ["a", "b", "c", "d", "e"] {
            let Claim::New(r) = s.claim(&caller(), k, b"x").await else {
                panic!()
            };
            r.complete().await;
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
        assert_eq!(validate_key(""), Err(InvalidKey::Empty));
        assert_eq!(
            validate_key(&"k".repeat(256)),
            Err(InvalidKey::TooLong(256))
        );
        assert_eq!(validate_key("has space"), Err(InvalidKey::NotVisibleAscii));
        assert_eq!(
            InvalidKey::Empty.to_string(),
            "Idempotency-Key must be 1-255 visible ASCII characters"
        );
    }
}
