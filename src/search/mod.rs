//! Search and statistics over a tenant's messages (`GET /api/v1/messages`,
//! `GET /api/v1/stats`): what a query asks, what a store answers, and the
//! parts both stores share — the opaque cursor ([`cursor`]) and the counters
//! ([`tally`]): a message counts once, under its current status, in the
//! minute it was accepted.
//!
//! Who is searched ([`Owner`]): a tenant's messages with `TENANTS_FILE`,
//! otherwise the key's own. Each store reads only the owner's rows, so no
//! filter or cursor reaches another tenant's.

pub mod cursor;
pub mod query;
pub mod tally;

use futures_util::future::BoxFuture;

use crate::status::error::StoreError;
use crate::status::model::Status;
use crate::status::record::MessageRecord;
use crate::tenants::Scope;

pub use cursor::Position;
pub use tally::{Bucket, Counts, Tally};

/// Where messages are searched and counted: the store that keeps their
/// statuses (the embedded database, or the DynamoDB table).
pub trait SearchStore: Send + Sync {
    /// A page of `search`, newest first.
    fn search<'a>(&'a self, search: &'a Search) -> BoxFuture<'a, Result<Found, StoreError>>;

    /// The counters of `query`'s range, per series bucket (or per minute,
    /// or over the range without a series: [`Counts::sum`] adds them up).
    fn counts<'a>(
        &'a self,
        query: &'a StatsQuery,
    ) -> BoxFuture<'a, Result<Vec<Bucket>, StoreError>>;
}

/// Whose messages a search or a count covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The tenant (`default` without `TENANTS_FILE`).
    pub tenant: String,
    /// Only this key's messages (without `TENANTS_FILE`); `None`: the tenant's.
    pub api_key_id: Option<String>,
}

impl Owner {
    /// The owner a caller with `scope`, key `key_id` and `tenant` searches:
    /// an admin key searches its tenant's (everyone's without `TENANTS_FILE`,
    /// where every message is the `default` tenant's).
    pub fn of(scope: &Scope, key_id: &str, tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            api_key_id: match scope {
                Scope::Key(_) => Some(key_id.to_owned()),
                Scope::Tenant(_) | Scope::Admin => None,
            },
        }
    }
}

/// The filters of a search; every one given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// The recipient, E.164.
    pub to: Option<String>,
    /// The current status.
    pub status: Option<Status>,
    /// The channel of the current status (`sms` after a failover).
    pub channel: Option<String>,
    /// The sender (`from` as resolved at acceptance).
    pub from: Option<String>,
    /// The batch.
    pub batch_id: Option<String>,
    /// Accepted at or after, Unix ms.
    pub since_ms: Option<i64>,
    /// Accepted before, Unix ms.
    pub until_ms: Option<i64>,
}

impl Filters {
    /// True when a message accepted at `at_ms` is within `since` and `until`.
    pub fn holds(&self, at_ms: i64) -> bool {
        self.since_ms.is_none_or(|s| at_ms >= s) && self.until_ms.is_none_or(|u| at_ms < u)
    }
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Whose messages.
    pub owner: Owner,
    /// What they must match.
    pub filters: Filters,
    /// At most this many (1–1000).
    pub limit: usize,
    /// Only messages after this one, newest first (the cursor's position).
    pub after: Option<Position>,
    /// The key that asked: a cursor is bound to it.
    pub asked_by: String,
}

/// A page of messages, newest first, and where the next one starts.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The messages.
    pub records: Vec<MessageRecord>,
    /// The last message of a full page: more may follow it.
    pub next: Option<Position>,
}

/// A count of messages accepted in `[since_ms, until_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Whose messages.
    pub owner: Owner,
    /// From this minute, Unix ms (aligned to the minute).
    pub since_ms: i64,
    /// To this minute, exclusive, Unix ms (aligned to the minute).
    pub until_ms: i64,
    /// Only this channel's.
    pub channel: Option<String>,
    /// Buckets of this many ms for a series (aligned to the UTC epoch); `None`: totals only.
    pub bucket_ms: Option<i64>,
}

impl StatsQuery {
    /// The width of the buckets a store sums its counters into: the
    /// series', or without a series the whole range (the totals are then
    /// summed by the store, not minute by minute).
    pub fn step_ms(&self) -> i64 {
        self.bucket_ms
            .unwrap_or((self.until_ms - self.since_ms).max(MINUTE_MS))
    }
}

/// One minute in Unix ms.
pub const MINUTE_MS: i64 = 60_000;

/// The start of the minute of `ms`.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}
