//! The gateway's window check. The embedded store answers from its own
//! exact cache (no cache here). With DynamoDB, open and unknown windows are
//! read through a cache of at most `ttl` (60 s): a person's message or a
//! 131047 reported to this gateway drops its entry at once, a 131047 the
//! consumer learns or another gateway took may take that long to be seen
//! here (the consumer checks again before sending). Closed windows are not
//! cached: a refusal never outlives the person's next message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::status::StatusStore;
use crate::window::Window;

/// Most windows cached; past it the cache starts over.
const MAX_CACHED: usize = 100_000;

type Entries = HashMap<(String, String), (Instant, Window)>;

/// Windows as the gateway sees them.
#[derive(Debug)]
pub struct WindowCache {
    store: Arc<dyn StatusStore>,
    ttl: Duration,
    entries: Mutex<Entries>,
}

impl WindowCache {
    /// Reads `store`'s windows, each kept for `ttl` (zero: not kept).
    pub fn new(store: Arc<dyn StatusStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::default(),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The window of `person` with `number_id`; `None` when the store
    /// cannot be read (logged: the send goes, and the consumer checks).
    pub async fn get(&self, number_id: &str, person: &str) -> Option<Window> {
        let key = (number_id.to_owned(), person.to_owned());
        if let Some((at, window)) = self.cached().get(&key)
            && at.elapsed() < self.ttl
        {
            return Some(*window);
        }
        match self.store.window(number_id, person).await {
            // A closed window is read again each time: the person's next
            // message may reach another gateway, and a refusal must not
            // outlive it (an open one cached too long costs at most a send
            // the consumer checks again).
            Ok(window)
                if self.ttl.is_zero()
                    || window.state(crate::clock::now_ms())
                        == crate::window::WindowState::Closed =>
            {
                Some(window)
            }
            Ok(window) => {
                let mut cached = self.cached();
                if cached.len() >= MAX_CACHED {
                    cached.clear();
                }
                cached.insert(key, (Instant::now(), window));
                Some(window)
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot read the customer-service window at the edge; the consumer checks again");
                None
            }
        }
    }

    /// Drops these windows from the cache (they just changed here).
    pub fn forget<'a>(&self, keys: impl Iterator<Item = (&'a str, &'a str)>) {
        let mut cached = self.cached();
        for (number_id, person) in keys {
            cached.remove(&(number_id.to_owned(), person.to_owned()));
        }
    }
}
