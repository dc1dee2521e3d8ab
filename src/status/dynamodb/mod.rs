//! The status store with SNS: one DynamoDB table (`STATUS_TABLE`, partition
//! key `pk`, sort key `sk`, both strings; TTL attribute `expiresAt`).
//!
//! Item layout (all with `sk = "status"`):
//! - `pk = "msg#<message id>"`: the message. `apiKeyId`, `channel`, `to`,
//!   `callbackData`, `acceptedAt`, `scheduledFor`, `batchId` (written with `if_not_exists`: the first
//!   writer, gateway or consumer, sets them), `providerMessageId`,
//!   `updatedAt`, and one attribute per reached status, `h_<channel>_<status>`
//!   (a failover leg's entries beside the first leg's), holding
//!   its history entry as JSON and written with `if_not_exists` — so each
//!   writer adds only its own entry and concurrent writers merge without locks
//!   (the current status is a function of which `h_*` exist, see
//!   [`model::current`](super::model::current)). `ev_<channel>_<status>`
//!   marks the event of each status the message has been in (`claimed:<ms>`,
//!   then `done`: once-only work, see [`claims`]).
//!   `fallback` (JSON) keeps a WhatsApp message's SMS fallback; `failover`
//!   marks sending it (once-only work, so one report wins; `failoverAt` on
//!   items written before it). For search ([`search`]): `listTenant` (the
//!   partition of the `byTenantTime` index, sorted by `acceptedAt`, which
//!   projects `apiKeyId`, `to`, `curStatus`, `curChannel`, `sender`, `batchId`),
//!   `sender`, `smsSegments`, and `counted`, `curStatus`, `curChannel`: the
//!   tally the message is counted under.
//! - `pk = "stats#<tenant>"`, `sk = "m#<minute ms, 13 digits>#<shard 0-7>#<api key id>"`:
//!   the counters of the messages accepted in that minute, `c|<channel>|<status>|<code>`
//!   and their SMS segments `g|…` (see [`search`]).
//! - `pk = "pid#<provider message id>"`: `messageId` once the consumer has
//!   recorded the send, and `h_*` entries of reports that came before it.
//!   A report is always written here first and then, when `messageId` is
//!   known, to the message; the consumer writes `messageId` and then copies
//!   what it finds. Whichever of the two writes second sees the other's, so
//!   an early report is never lost.
//! - `pk = "inbound#<provider message id>"`: an inbound message seen;
//!   `ev_inbound` marks its event (once-only work).
//! - `pk = "optout#<number>"`: a recipient's opt-out: `channels` (JSON
//!   array, `[]` once every channel is removed: the item stays), `ordering`
//!   (JSON: per channel the time of the latest change, and the latest inbound
//!   ids; see [`crate::optout`]), `source` and `changedAt` of the latest
//!   change of the channels, `updatedAt` of the latest write, and the
//!   change's event until it is published (`pendingEvent…`); changed by read
//!   and conditional put on `updatedAt`, so concurrent changes never
//!   overwrite each other (see [`opt_outs`]). Opt-outs do not expire (their
//!   `expiresAt` is far in the future).
//!
//! Every item carries `expiresAt` (Unix seconds, `STATUS_TTL_DAYS` after its
//! last write) for DynamoDB's TTL.

mod cancel;
mod claims;
mod inbound;
mod opt_outs;
pub mod schedule;
mod search;
mod templates;
mod windows;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::model::{Entry, Status};
use super::{
    BoxFuture, Inbound, MessageInfo, MessageRecord, OptOutStore, StatusStore, StoreError, Update,
    apply, now_ms,
};
use crate::events::sns::SnsEvents;
use crate::optout::{OptOut, OptOutUpdate};
use crate::publisher::Publisher;

const SK: &str = "status";

type Item = HashMap<String, AttributeValue>;

/// Statuses in DynamoDB, events to an SNS topic.
#[derive(Clone)]
pub struct DynamoStatusStore {
    client: Client,
    table: String,
    ttl: Duration,
    events: Option<SnsEvents>,
    /// Where failover envelopes are published (the gateway's topic).
    failover: Option<Arc<dyn Publisher>>,
    /// Inbound media is kept before the event (`MEDIA_BUCKET`).
    media_jobs: bool,
    /// Striped by message: this process moves one message's count at a
    /// time (see [`search`]).
    count_locks: Arc<[tokio::sync::Mutex<()>]>,
}

impl std::fmt::Debug for DynamoStatusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStatusStore")
            .field("table", &self.table)
            .field("events", &self.events.is_some())
            .field("failover", &self.failover.is_some())
            .finish_non_exhaustive()
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// An event that could not be published after what it tells was written:
/// the caller does not acknowledge, so the write comes again and publishes it.
fn event_error(e: crate::events::sns::EventPublishError) -> StoreError {
    StoreError::caused_by("recorded, but its event is not published yet", e)
}

/// A failed DynamoDB call: `context`, with the SDK error as its source.
fn error<E, R>(context: &str, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::caused_by(context, e)
}

/// The attribute of a history entry: `h_<channel>_<status>`, so the entries
/// of a failover leg (another channel) sit beside the first leg's and every
/// writer still names its own attribute without reading the item.
fn history_attribute(status: Status, entry: &Entry) -> String {
    format!(
        "h_{}_{}",
        entry.channel.as_deref().unwrap_or("any"),
        status.as_str()
    )
}

/// Reads a message item back into a record.
fn record_from(item: &Item) -> MessageRecord {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let id = text("pk")
        .and_then(|pk| pk.strip_prefix("msg#").map(str::to_owned))
        .unwrap_or_default();
    let mut record = MessageRecord::new(&id);
    record.api_key_id = text("apiKeyId").unwrap_or_default();
    if let Some(tenant) = text("tenant") {
        record.tenant = tenant;
    }
    record.channel = text("channel").unwrap_or_default();
    record.to = text("to").unwrap_or_default();
    record.callback_data = text("callbackData");
    record.provider_message_id = text("providerMessageId");
    record.accepted_at_ms = number("acceptedAt").unwrap_or_default();
    record.fallback_leg = text("fallback").and_then(|f| serde_json::from_str(&f).ok());
    record.scheduled_for_ms = number("scheduledFor");
    record.batch_id = text("batchId");
    // Sent: the `failover` work done (or, on items from before it, claimed).
    record.failover_at_ms = match text("failover").as_deref() {
        Some("done") => Some(number("updatedAt").unwrap_or_default()),
        _ => number("failoverAt"),
    };
    for (status, entry) in entries_from(item) {
        record.merge(status, entry, 0);
    }
    record.updated_at_ms = number("updatedAt").unwrap_or_default();
    record
}

/// The `h_*` entries of an item, in rank order.
fn entries_from(item: &Item) -> Vec<(Status, Entry)> {
    let mut entries: Vec<(Status, Entry)> = item
        .iter()
        .filter(|(name, _)| name.starts_with("h_"))
        .filter_map(|(name, value)| {
            let status = Status::ALL
                .into_iter()
                .find(|s| name.ends_with(&format!("_{}", s.as_str())))?;
            Some((
                status,
                serde_json::from_str::<Entry>(value.as_s().ok()?).ok()?,
            ))
        })
        .collect();
    entries.sort_by_key(|(status, entry)| (*status, entry.at_ms));
    entries
}

impl DynamoStatusStore {
    /// The store named by `STATUS_TABLE`, with events to `EVENTS_TOPIC_ARN`
    /// when set, on the standard AWS environment; `None` without a table.
    /// The table's key schema and the events topic are checked first
    /// ([`crate::preflight`]).
    pub async fn from_config(
        config: &crate::config::StatusConfig,
        timeouts: crate::config::AwsTimeouts,
    ) -> Result<Option<Self>, crate::config::ConfigError> {
        let Some(table) = config.table.as_ref() else {
            return Ok(None);
        };
        let aws = crate::aws::sdk_config(timeouts).await;
        let client = Client::new(&aws);
        crate::preflight::check_status_table(&client, table).await?;
        let events = match &config.events_topic_arn {
            None => None,
            Some(arn) => {
                let sns = aws_sdk_sns::Client::new(&aws);
                crate::preflight::check_topic(&sns, "EVENTS_TOPIC_ARN", arn).await?;
                Some(SnsEvents::new(sns, arn))
            }
        };
        Ok(Some(Self::new(client, table, config.ttl, events)))
    }

    /// A store in `table`, keeping items for `ttl`, publishing events when
    /// `events` is given.
    pub fn new(client: Client, table: &str, ttl: Duration, events: Option<SnsEvents>) -> Self {
        Self {
            client,
            table: table.to_owned(),
            ttl,
            events,
            failover: None,
            media_jobs: false,
            count_locks: (0..search::COUNT_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// The table, as the fleet's shared state (the same client: one AWS
    /// configuration and credentials chain per process).
    pub fn fleet_table(&self) -> crate::fleet::FleetTable {
        crate::fleet::FleetTable::new(self.client.clone(), &self.table)
    }

    /// Publishes failover envelopes to `publisher` when a provider's report
    /// says the person cannot be reached (the gateway's SNS topic).
    #[must_use]
    pub fn with_failover(mut self, publisher: Arc<dyn Publisher>) -> Self {
        self.failover = Some(publisher);
        self
    }

    fn expires_at(&self) -> AttributeValue {
        n(chrono::Utc::now().timestamp() + self.ttl.as_secs() as i64)
    }

    /// Adds entries (first one wins per status) to the item `pk`, with any
    /// `extra` SET clauses; returns the item as it is now.
    async fn add_entries(
        &self,
        pk: String,
        entries: &[(Status, Entry)],
        extra: &[(&str, AttributeValue, bool)],
    ) -> Result<Item, StoreError> {
        let mut sets = vec!["updatedAt = :now".to_owned()];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(SK))
            .expression_attribute_values(":now", n(now_ms()))
            .return_values(ReturnValue::AllNew);
        // An `expiresAt` among `extra` replaces the usual one.
        if !extra.iter().any(|(name, _, _)| *name == "expiresAt") {
            sets.push("expiresAt = :exp".to_owned());
            request = request.expression_attribute_values(":exp", self.expires_at());
        }
        for (i, (status, entry)) in entries.iter().enumerate() {
            sets.push(format!("#h{i} = if_not_exists(#h{i}, :h{i})"));
            request = request
                .expression_attribute_names(format!("#h{i}"), history_attribute(*status, entry))
                .expression_attribute_values(
                    format!(":h{i}"),
                    s(serde_json::to_string(entry).expect("an entry serialises")),
                );
        }
        for (i, (name, value, only_if_missing)) in extra.iter().enumerate() {
            sets.push(if *only_if_missing {
                format!("#x{i} = if_not_exists(#x{i}, :x{i})")
            } else {
                format!("#x{i} = :x{i}")
            });
            request = request
                .expression_attribute_names(format!("#x{i}"), *name)
                .expression_attribute_values(format!(":x{i}"), value.clone());
        }
        let output = request
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .map_err(|e| error("cannot write a status", e))?;
        Ok(output.attributes.unwrap_or_default())
    }

    /// Publishes the event for the status the item is in after a write, once:
    /// once-only work marked `ev_<channel>_<status>` (see [`claims`]), so
    /// racing writers that both see a status publish it once, a status
    /// reached while another is being published gets its own event, and a
    /// report that changes nothing (a stale `sent` after `read`) publishes
    /// none. Each write that changes the status calls this, so every change
    /// gets its event. A failed publish is an error, so the caller's source
    /// retries.
    async fn emit_status(&self, item: &Item) -> Result<(), StoreError> {
        let (Some(events), Some(pk)) = (&self.events, item.get("pk")) else {
            return Ok(());
        };
        let Some(settled) = apply::settled(&record_from(item), now_ms()) else {
            return Ok(());
        };
        let (channel, current) = settled.current;
        let marker = format!("ev_{channel}_{}", current.as_str());
        let done = |name: &str, value: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some(value)
        };
        // `evented` is how items written before the markers said it.
        if done(&marker, "done") || done("evented", current.as_str()) {
            return Ok(());
        }
        let Some(event) = settled.event else {
            return Ok(());
        };
        self.once(pk, &marker, || async {
            events.publish(&event).await.map_err(event_error)?;
            crate::metrics::status_transition(&channel, current.as_str());
            Ok(())
        })
        .await
    }

    async fn record_message(
        &self,
        info: &MessageInfo,
        status: Status,
        entry: &Entry,
        provider_message_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut extra = vec![
            ("apiKeyId", s(&info.api_key_id), true),
            ("tenant", s(&info.tenant), true),
            ("channel", s(&info.channel), true),
            ("to", s(&info.to), true),
            ("acceptedAt", n(info.accepted_at_ms), true),
            ("listTenant", s(&info.tenant), true),
            ("smsSegments", n(info.sms_segments), true),
        ];
        if let Some(from) = &info.from {
            extra.push(("sender", s(from), true));
        }
        if let Some(data) = &info.callback_data {
            extra.push(("callbackData", s(data), true));
        }
        if let Some(fallback) = &info.fallback {
            let json = serde_json::to_string(fallback).expect("a fallback serialises");
            extra.push(("fallback", s(json), true));
        }
        if let Some(at) = info.scheduled_for_ms {
            extra.push(("scheduledFor", n(at), true));
            extra.push(("expiresAt", self.expires_after_due(at), false));
        }
        if let Some(batch) = &info.batch_id {
            extra.push(("batchId", s(batch), true));
        }
        if let Some(pid) = provider_message_id {
            extra.push(("providerMessageId", s(pid), false));
        }
        let pk = format!("msg#{}", info.id);
        // The sender's fields bring the `accepted` entry, so a record the
        // consumer creates (the gateway's write failed) has it too.
        let mut entries = vec![(status, entry.clone())];
        if status != Status::Accepted {
            entries.push((Status::Accepted, info.accepted_entry()));
        }
        let item = self.add_entries(pk.clone(), &entries, &extra).await?;
        self.emit_status(&item).await?;
        self.count(&item).await?;
        let Some(pid) = provider_message_id else {
            return Ok(());
        };
        // Correlate, and take the reports that came before this write.
        let early = self
            .add_entries(
                format!("pid#{pid}"),
                &[],
                &[("messageId", s(&info.id), false)],
            )
            .await?;
        // One status at a time, in rank order: one event per change.
        for report in entries_from(&early) {
            let fails_over = report.1.fails_over();
            let item = self.add_entries(pk.clone(), &[report], &[]).await?;
            self.emit_status(&item).await?;
            self.count(&item).await?;
            // A cannot-reach report that came before the send was recorded.
            self.fail_over(&item, fails_over).await?;
        }
        Ok(())
    }

    /// Sends the message of `item` by its fallback when `fails_over` and it
    /// has one not sent yet: once-only work marked `failover` (see
    /// [`claims`]), so one of several concurrent reports sends it, and a
    /// publish that fails or never happens (the writer died) is retried by
    /// the report's (or the SQS message's) next attempt.
    async fn fail_over(&self, item: &Item, fails_over: bool) -> Result<(), StoreError> {
        let (Some(publisher), Some(envelope), Some(pk)) = (
            &self.failover,
            apply::failover(&record_from(item), fails_over),
            item.get("pk"),
        ) else {
            return Ok(());
        };
        self.once(pk, "failover", || async {
            publisher
                .publish(&envelope)
                .await
                .map_err(|e| StoreError::caused_by("cannot publish a failover", e))?;
            tracing::info!(message_id = %envelope.id, "the provider reported that it cannot reach the person: the message goes by its fallback");
            Ok(())
        })
        .await
    }

    async fn record_report(
        &self,
        provider_message_id: &str,
        status: Status,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let report = [(status, entry.clone())];
        let correlation = self
            .add_entries(format!("pid#{provider_message_id}"), &report, &[])
            .await?;
        let Some(message_id) = correlation.get("messageId").and_then(|v| v.as_s().ok()) else {
            // Kept with the provider id until the consumer records the send.
            return Ok(());
        };
        let item = self
            .add_entries(format!("msg#{message_id}"), &report, &[])
            .await?;
        self.emit_status(&item).await?;
        self.count(&item).await?;
        self.fail_over(&item, entry.fails_over()).await
    }

    async fn apply(&self, update: &Update) -> Result<(), StoreError> {
        match update {
            Update::Message {
                info,
                status,
                entry,
                provider_message_id: provider_id,
            } => {
                self.record_message(info, *status, entry, provider_id.as_deref())
                    .await
            }
            Update::Provider {
                provider_message_id,
                status,
                entry,
            } => {
                self.record_report(provider_message_id, *status, entry)
                    .await
            }
        }
    }
}

/// Most DynamoDB writes of one `record` call in flight at once.
const CONCURRENCY: usize = 16;

impl OptOutStore for DynamoStatusStore {
    fn opt_out<'a>(
        &'a self,
        tenant: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<Option<OptOut>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .read_opt_out(tenant, number)
                .await?
                .map(|c| c.opt_out)
                .filter(|o| !o.channels.is_empty()))
        })
    }

    fn change_opt_outs(&self, updates: Vec<OptOutUpdate>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for u in &updates {
                self.change_opt_out(u).await?;
            }
            Ok(())
        })
    }
}

impl StatusStore for DynamoStatusStore {
    fn record(
        &self,
        updates: Vec<Update>,
        inbound: Vec<Inbound>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            use futures_util::stream::{self, TryStreamExt};
            // Reports for the same message are applied in order; different
            // messages concurrently.
            let mut lists: Vec<Vec<Update>> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            for u in updates {
                let key = match &u {
                    Update::Message { info, .. } => &info.id,
                    Update::Provider {
                        provider_message_id,
                        ..
                    } => provider_message_id,
                };
                let slot = *index.entry(key.clone()).or_insert_with(|| {
                    lists.push(Vec::new());
                    lists.len() - 1
                });
                lists[slot].push(u);
            }
            stream::iter(lists.into_iter().map(Ok))
                .try_for_each_concurrent(CONCURRENCY, |list| async move {
                    for u in &list {
                        self.apply(u).await?;
                    }
                    Ok::<(), StoreError>(())
                })
                .await?;
            // One webhook may carry the same message twice: once each.
            let mut seen = std::collections::HashSet::new();
            let inbound: Vec<&Inbound> = inbound
                .iter()
                .filter(|i| seen.insert(i.provider_message_id.as_str()))
                .collect();
            stream::iter(inbound.into_iter().map(Ok))
                .try_for_each_concurrent(CONCURRENCY, |i| self.record_inbound(i))
                .await
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
        scope: &'a crate::tenants::Scope,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .message_item(id)
                .await?
                .map(|item| record_from(&item))
                .filter(|r| scope.covers(&r.api_key_id, &r.tenant)))
        })
    }

    fn cancel<'a>(
        &'a self,
        ids: &'a [String],
        scope: &'a crate::tenants::Scope,
        batch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<crate::status::Cancellation>, StoreError>> {
        Box::pin(self.cancel_all(ids, scope, batch))
    }

    fn inbound_media_kept<'a>(
        &'a self,
        inbound: &'a Inbound,
        media: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.publish_with_media(inbound, media))
    }

    fn hand<'a>(
        &'a self,
        envelope: &'a crate::contract::Envelope,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.hand_over(envelope))
    }
}
