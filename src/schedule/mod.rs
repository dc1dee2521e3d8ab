//! Scheduled sends with SNS: a message due later than its acceptance is kept
//! in a [`ScheduleStore`] (the status table) instead of being published,
//! and the gateways' [`sweep`] publishes it when it comes due. The embedded
//! default needs none of this: its queue holds each envelope until its due
//! time.

pub mod publisher;
pub mod sweep;

use crate::contract::Envelope;
use crate::status::{BoxFuture, StoreError};

/// A scheduled message that has come due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its item's partition key.
    pub pk: String,
    /// Its item's sort key.
    pub sk: String,
    /// The envelope to publish, JSON.
    pub envelope: String,
}

/// Where scheduled messages wait.
pub trait ScheduleStore: Send + Sync + 'static {
    /// Keeps `envelope` until its `send_at`. `Ok`: it will be published then.
    fn put<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Up to `limit` entries per partition due at `now_ms` that no sweep holds.
    fn due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<Due>, StoreError>>;
    /// Takes `due` for this sweep: `Ok(false)` when another sweep holds it
    /// or it is gone.
    fn claim<'a>(&'a self, due: &'a Due, now_ms: i64) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Removes `due` once published.
    fn remove<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Gives back the claim on `due` (its publish failed): the next sweep
    /// takes it.
    fn release<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), StoreError>>;
}
