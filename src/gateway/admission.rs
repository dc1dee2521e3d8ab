//! What the gateway checks after a message is valid and before it is
//! published: that its channel (and its fallback's) can be delivered by this
//! deployment, that its senders are its tenant's, and that its recipient has not opted out of it (at once in
//! the embedded default, whose opt-outs are in memory; from a cache at most
//! [`SNS_OPT_OUT_CACHE`] old with DynamoDB).
//! The consumer checks opt-outs again before every delivery, so the cache's
//! lag, or a store that cannot be read here (the check then lets the message
//! through, and says so in the log), never lets a message through to an
//! opted-out recipient.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{DeliveryConfig, DeliveryMode};
use crate::contract::Channel;
use crate::domain::{FieldError, OutboundMessage, Sender};
use crate::gateway::error::ApiError;
use crate::gateway::window_check::WindowCache;
use crate::optout::{OptOut, consent_key};
use crate::status::StatusStore;
use crate::tenants::{NotAllowed, Tenants};
use crate::window::{self, WindowState};

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

    /// `tenant`'s opt-out of `number`, at most `ttl` old; `None` also when
    /// the store cannot be read (logged: the consumer's check still holds).
    pub async fn get(&self, tenant: &str, number: &str) -> Option<OptOut> {
        let key = consent_key(tenant, number);
        if !self.ttl.is_zero()
            && let Some((at, found)) = self.cached().get(&key)
            && at.elapsed() < self.ttl
        {
            return found.clone();
        }
        match self.store.opt_out(tenant, number).await {
            Ok(found) => {
                if !self.ttl.is_zero() {
                    let mut cached = self.cached();
                    if cached.len() >= MAX_CACHED {
                        cached.clear();
                    }
                    cached.insert(key, (Instant::now(), found.clone()));
                }
                found
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot read opt-outs at the edge; the consumer checks again before delivery");
                None
            }
        }
    }

    /// Drops `tenant`'s `number` from the cache (its opt-out was just
    /// changed here).
    pub fn forget(&self, tenant: &str, number: &str) {
        self.cached().remove(&consent_key(tenant, number));
    }
}

/// The gateway's checks of a valid message.
#[derive(Debug)]
pub struct Admission {
    mode: DeliveryMode,
    tenants: Arc<Tenants>,
    opt_outs: Option<OptOutCache>,
    /// Windows, when a store is set and `WHATSAPP_WINDOW` is on.
    windows: Option<WindowCache>,
    window_checks: bool,
    /// Whether a message due later can wait somewhere (the embedded queue,
    /// or with SNS the schedule in `STATUS_TABLE`): set with the store.
    scheduling: bool,
}

impl Admission {
    /// Checks against the delivery configuration, the tenants' senders and,
    /// when set, opt-outs.
    pub fn new(delivery: &DeliveryConfig, tenants: Arc<Tenants>) -> Self {
        Self {
            mode: delivery.mode.clone(),
            tenants,
            opt_outs: None,
            windows: None,
            window_checks: delivery.window_checks,
            scheduling: false,
        }
    }

    /// The same checks, with opt-outs read from `store` through a cache of
    /// `opt_out_ttl`, and windows through theirs.
    pub fn with_store(&self, store: &Arc<dyn StatusStore>, opt_out_ttl: Duration) -> Self {
        Self {
            mode: self.mode.clone(),
            tenants: self.tenants.clone(),
            opt_outs: Some(OptOutCache::new(store.clone(), opt_out_ttl)),
            windows: self
                .window_checks
                .then(|| WindowCache::new(store.clone(), opt_out_ttl)),
            window_checks: self.window_checks,
            scheduling: true,
        }
    }

    /// Drops windows that just changed from the cache.
    pub fn forget_windows<'a>(&self, keys: impl Iterator<Item = (&'a str, &'a str)>) {
        if let Some(windows) = &self.windows {
            windows.forget(keys);
        }
    }

    /// `422 outside-customer-service-window` for a free-form WhatsApp
    /// message, without a fallback, to a person whose window is known closed
    /// (with a fallback it goes: the consumer sends the SMS instead).
    async fn check_window(&self, message: &OutboundMessage) -> Result<(), ApiError> {
        let Some(windows) = &self.windows else {
            return Ok(());
        };
        if message.channel != Channel::Whatsapp
            || message.fallback.is_some()
            || !window::is_free_form(message.kind.as_str())
        {
            return Ok(());
        }
        let number = message
            .from
            .as_ref()
            .map(|s| s.value.as_str())
            .or(self.tenants.deployment_number());
        let Some(number) = number else {
            return Ok(());
        };
        match windows.get(number, message.to.as_str()).await {
            Some(w) if w.state(crate::clock::now_ms()) == WindowState::Closed => {
                Err(ApiError::OutsideWindow {
                    last_inbound_at: w.last_inbound_ms.map(crate::clock::format_ms),
                })
            }
            _ => Ok(()),
        }
    }

    /// Names the senders of `tenant`'s `message`: `from` (or an SMS's
    /// `sender`, or a fallback's) when the tenant may use it, the tenant's
    /// first when it names none; `422 sender-not-allowed` naming the field
    /// otherwise.
    pub fn resolve_senders(
        &self,
        tenant: &str,
        message: &mut OutboundMessage,
    ) -> Result<(), ApiError> {
        let asked = message.from.take();
        let field = asked.as_ref().map_or("from", |s| s.field);
        let resolved = self
            .tenants
            .sender(
                tenant,
                message.channel,
                asked.as_ref().map(|s| s.value.as_str()),
            )
            .map_err(|e| refusal(e, field, message.channel, "channel"))?;
        if message.channel == Channel::Sms {
            set_sms_sender(&mut message.content, resolved.as_deref());
        }
        message.from = resolved.map(|value| Sender { value, field });
        if let Some(fallback) = &mut message.fallback {
            let asked = fallback.content.get("sender").and_then(|s| s.as_str());
            let resolved = self
                .tenants
                .sender(tenant, fallback.channel, asked)
                .map_err(|e| refusal(e, "fallback.sender", fallback.channel, "fallback.channel"))?;
            set_sms_sender(&mut fallback.content, resolved.as_deref());
        }
        Ok(())
    }

    /// Sets when `tenant`'s `message` is due (its `sendAt`, moved out of its
    /// quiet hours or else its tenant's): `message.send_at_ms` becomes that
    /// time, or `None` for now. Returns what the `202` says of it; `501`
    /// when it is due later and nothing here can keep it until then.
    pub fn schedule(
        &self,
        tenant: &str,
        message: &mut OutboundMessage,
    ) -> Result<Scheduled, ApiError> {
        let requested = message.send_at_ms;
        let quiet = message
            .quiet_hours
            .as_ref()
            .or_else(|| self.tenants.quiet_hours(tenant));
        let due =
            crate::domain::schedule::due_at(requested, quiet, &message.to, crate::clock::now_ms());
        if due.is_some() && !self.scheduling {
            return Err(ApiError::SchedulingNotConfigured);
        }
        message.send_at_ms = due;
        Ok(Scheduled { requested, due })
    }

    /// The opt-out cache, for the opt-out API.
    pub fn opt_outs(&self) -> Option<&OptOutCache> {
        self.opt_outs.as_ref()
    }

    /// `Ok` when `tenant`'s `message` may be published.
    pub async fn check(&self, tenant: &str, message: &OutboundMessage) -> Result<(), ApiError> {
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
        if let Some(cache) = &self.opt_outs {
            for holder in self.tenants.consent_holders(tenant, message.channel) {
                if let Some(o) = cache.get(holder, message.to.as_str()).await
                    && o.blocks(message.channel)
                {
                    return Err(ApiError::RecipientOptedOut(message.channel.as_str()));
                }
            }
        }
        self.check_window(message).await
    }
}

/// What the `202` says of a message's schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scheduled {
    /// Its `sendAt`, when in the future, Unix ms.
    pub requested: Option<i64>,
    /// When it is due, if later than now, Unix ms.
    pub due: Option<i64>,
}

impl Scheduled {
    /// Adds `sendAt` and `scheduledFor` to an acceptance's JSON object.
    pub fn describe(&self, answer: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(at) = self.requested {
            answer.insert("sendAt".into(), crate::clock::format_ms(at).into());
        }
        if let Some(at) = self.due {
            answer.insert("scheduledFor".into(), crate::clock::format_ms(at).into());
        }
    }
}

/// An SMS message object's `sender`: `sender`, or none (the account's default).
fn set_sms_sender(content: &mut serde_json::Value, sender: Option<&str>) {
    let Some(object) = content.as_object_mut() else {
        return;
    };
    match sender {
        Some(s) => {
            object.insert("sender".into(), s.into());
        }
        None => {
            object.remove("sender");
        }
    }
}

/// The 422 for a sender the tenant may not use (naming `field`), or for a
/// channel it has no sender on (naming `channel_field`).
fn refusal(
    refusal: NotAllowed,
    field: &str,
    channel: Channel,
    channel_field: &'static str,
) -> ApiError {
    match refusal {
        NotAllowed::Sender => ApiError::SenderNotAllowed(vec![FieldError {
            field: field.to_owned(),
            message: "is not a sender of this API key's tenant".into(),
        }]),
        NotAllowed::NoNumber => ApiError::ChannelNotConfigured {
            field: channel_field,
            channel: channel.as_str(),
        },
    }
}
