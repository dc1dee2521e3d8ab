//! What the gateway checks after a message is valid and before it is
//! published: that its channel (and its fallback's) can be delivered by this
//! deployment, and that its recipient has not opted out of it (at once in
//! the embedded default, whose opt-outs are in memory; from a cache at most
//! [`SNS_OPT_OUT_CACHE`] old with DynamoDB).
//! The consumer checks opt-outs again before every delivery, so the cache's
//! lag, or a store that cannot be read here (the check then lets the message
//! through, and says so in the log), never lets a message through to an
//! opted-out recipient.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::DeliveryMode;
use crate::domain::OutboundMessage;
use crate::gateway::error::ApiError;
use crate::optout::OptOut;
use crate::status::StatusStore;

/// How old a cached opt-out may be with DynamoDB.
pub const SNS_OPT_OUT_CACHE: Duration = Duration::from_secs(60);
/// Most numbers cached; past it the cache starts over.
const MAX_CACHED: usize = 100_000;

/// Opt-outs as the gateway sees them: read through a cache of `ttl` (zero:
/// no cache, the store is asked each time).
#[derive(Debug)]
pub struct OptOutCache {
    store: Arc<dyn StatusStore>,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<OptOut>)>>,
}

impl OptOutCache {
    /// Reads `store`'s opt-outs, each kept for `ttl`.
    pub fn new(store: Arc<dyn StatusStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::default(),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<OptOut>)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The opt-out of `number`, at most `ttl` old; `None` also when the store
    /// cannot be read (logged: the consumer's check still holds).
    pub async fn get(&self, number: &str) -> Option<OptOut> {
        if !self.ttl.is_zero()
            && let Some((at, found)) = self.cached().get(number)
            && at.elapsed() < self.ttl
        {
            return found.clone();
        }
        match self.store.opt_out(number).await {
            Ok(found) => {
                if !self.ttl.is_zero() {
                    let mut cached = self.cached();
                    if cached.len() >= MAX_CACHED {
                        cached.clear();
                    }
                    cached.insert(number.to_owned(), (Instant::now(), found.clone()));
                }
                found
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot read opt-outs at the edge; the consumer checks again before delivery");
                None
            }
        }
    }

    /// Drops `number` from the cache (its opt-out was just changed here).
    pub fn forget(&self, number: &str) {
        self.cached().remove(number);
    }
}

/// The gateway's checks of a valid message.
#[derive(Debug)]
pub struct Admission {
    mode: DeliveryMode,
    opt_outs: Option<OptOutCache>,
}

impl Admission {
    /// Checks against the delivery configuration and, when set, opt-outs.
    pub fn new(mode: DeliveryMode, opt_outs: Option<OptOutCache>) -> Self {
        Self { mode, opt_outs }
    }

    /// The same checks, with opt-outs read through `cache`.
    pub fn with_opt_outs(&self, cache: OptOutCache) -> Self {
        Self {
            mode: self.mode.clone(),
            opt_outs: Some(cache),
        }
    }

    /// The opt-out cache, for the opt-out API.
    pub fn opt_outs(&self) -> Option<&OptOutCache> {
        self.opt_outs.as_ref()
    }

    /// `Ok` when `message` may be published.
    pub async fn check(&self, message: &OutboundMessage) -> Result<(), ApiError> {
        if !self.mode.delivers(message.channel) {
            return Err(ApiError::ChannelNotConfigured {
                field: "channel",
                channel: message.channel.as_str(),
            });
        }
        if let Some(f) = &message.fallback
            && !self.mode.delivers(f.channel)
        {
            return Err(ApiError::ChannelNotConfigured {
                field: "fallback.channel",
                channel: f.channel.as_str(),
            });
        }
        if let Some(cache) = &self.opt_outs
            && let Some(o) = cache.get(message.to.as_str()).await
            && o.blocks(message.channel)
        {
            return Err(ApiError::RecipientOptedOut(message.channel.as_str()));
        }
        Ok(())
    }
}
