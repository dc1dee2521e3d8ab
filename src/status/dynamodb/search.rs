//! Search and counters in the status table.
//!
//! - Listing reads the global secondary index `byTenantTime` (partition
//!   `listTenant`, sort `acceptedAt`), declared in `deploy/template.yaml`:
//!   newest first, the other filters as a `FilterExpression` on the
//!   attributes it projects, `apiKeyId`, `to`, `curStatus`, `curChannel`,
//!   `sender`, `batchId`; then one consistent `BatchGetItem` reads the
//!   page's items. Only message items carry `listTenant`.
//! - Counters ([`crate::search::tally`]): the message item's `counted`
//!   (`channel|status|code`) says which tally it is counted under. After a
//!   write changes its current status, one `TransactWriteItems` sets
//!   `counted` (with `curStatus`, `curChannel`) on the condition that it
//!   still holds the tally this writer read, and moves the count on the item
//!   `pk = stats#<tenant>`, `sk = m#<minute, 13 digits>#<shard>#<api key id>`
//!   (the shard, from the message id, spreads one busy minute's moves over
//!   8 items)
//!   (attributes `c|<tally>` count, `g|<tally>` SMS segments). A writer that
//!   loses the race reads the item again and moves from what the winner
//!   recorded; a write that failed after the status (the count not moved)
//!   is repaired by the retry of its source, which finds `counted` behind.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{Select, TransactWriteItem, Update as TxUpdate};

use super::{BoxFuture, DynamoStatusStore, Item, SK, error, n, record_from, s};
use crate::search::{Bucket, Found, Position, Search, StatsQuery, Tally, minute_of};
use crate::status::StoreError;

/// The index a search reads.
pub const INDEX: &str = crate::preflight::STATUS_SEARCH_INDEX;
/// Most index pages one search reads before answering with a cursor (a
/// rare filter answers a short page rather than scanning everything).
const MAX_PAGES: usize = 10;
/// Most attempts at moving one message's count against racing writers
/// (another writer moved it, or a transaction on the same counters item
/// conflicted), each after a short random pause that grows.
const MAX_RACES: u64 = 8;
/// Locks striping the count moves of this process by message: writers of
/// one message in one process (a consumer's batch, a burst of webhooks)
/// take turns instead of racing and retrying, so the transaction's
/// condition only decides between processes.
pub const COUNT_LOCKS: usize = 64;
/// Counters items per owner and minute: concurrent moves for one busy
/// minute spread over this many items (summed when read).
const SHARDS: u32 = 8;

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

impl crate::search::SearchStore for DynamoStatusStore {
    fn search<'a>(
        &'a self,
        search: &'a crate::search::Search,
    ) -> BoxFuture<'a, Result<crate::search::Found, StoreError>> {
        Box::pin(self.search_index(search))
    }

    fn counts<'a>(
        &'a self,
        query: &'a crate::search::StatsQuery,
    ) -> BoxFuture<'a, Result<Vec<crate::search::Bucket>, StoreError>> {
        Box::pin(self.read_counts(query))
    }
}

impl DynamoStatusStore {
    /// Moves the count of the message `item` (as a write returned it) to
    /// its current tally, once.
    pub(super) async fn count(&self, item: &Item) -> Result<(), StoreError> {
        let Some(pk) = text(item, "pk") else {
            return Ok(());
        };
        let stripe = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            pk.hash(&mut hasher);
            (hasher.finish() % COUNT_LOCKS as u64) as usize
        };
        let lock = &self.count_locks[stripe];
        let (_turn, mut item) = match lock.try_lock() {
            Ok(turn) => (turn, item.clone()),
            // Another writer of this process went first: what it counted is
            // read again rather than raced against.
            Err(_) => {
                let turn = lock.lock().await;
                let id = pk.trim_start_matches("msg#");
                match self.message_item(id).await? {
                    Some(fresh) => (turn, fresh),
                    None => return Ok(()),
                }
            }
        };
        for race in 0..MAX_RACES {
            if race > 0 {
                let pause = fastrand::u64(5..=20) * race;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let Some(pk) = text(&item, "pk").filter(|pk| pk.starts_with("msg#")) else {
                return Ok(());
            };
            let segments = number(&item, "smsSegments").unwrap_or(0);
            let Some(new) = Tally::of(&record_from(&item), segments) else {
                return Ok(());
            };
            let counted = text(&item, "counted");
            if counted == Some(new.key().as_str()) {
                return Ok(());
            }
            let old = counted.and_then(|k| Tally::from_key(k, segments));
            match self
                .move_count(&item, pk, counted, old.as_ref(), &new)
                .await
            {
                Ok(()) => return Ok(()),
                Err(MoveError::Lost) => {}
                Err(MoveError::Failed(e)) => return Err(e),
            }
            let id = pk.trim_start_matches("msg#").to_owned();
            match self.message_item(&id).await? {
                Some(fresh) => item = fresh,
                None => return Ok(()),
            }
        }
        Err(StoreError::new(
            "the message's count kept changing under this writer",
        ))
    }

    async fn move_count(
        &self,
        item: &Item,
        pk: &str,
        counted: Option<&str>,
        old: Option<&Tally>,
        new: &Tally,
    ) -> Result<(), MoveError> {
        let mut mark = TxUpdate::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(SK))
            .update_expression("SET counted = :new, curStatus = :status, curChannel = :channel")
            .expression_attribute_values(":new", s(new.key()))
            .expression_attribute_values(":status", s(new.status.as_str()))
            .expression_attribute_values(":channel", s(&new.channel));
        mark = match counted {
            Some(was) => mark
                .condition_expression("counted = :was")
                .expression_attribute_values(":was", s(was)),
            None => mark.condition_expression("attribute_not_exists(counted)"),
        };
        let accepted_at = number(item, "acceptedAt").unwrap_or_default();
        let key_id = text(item, "apiKeyId").unwrap_or_default();
        let tenant = text(item, "tenant").unwrap_or(crate::contract::DEFAULT_TENANT);
        let mut deltas: Vec<(String, i64)> = vec![
            (format!("c|{}", new.key()), 1),
            (format!("g|{}", new.key()), new.sms_segments()),
        ];
        if let Some(old) = old {
            deltas.push((format!("c|{}", old.key()), -1));
            deltas.push((format!("g|{}", old.key()), -old.sms_segments()));
        }
        let mut counts = TxUpdate::builder()
            .table_name(&self.table)
            .key("pk", s(format!("stats#{tenant}")))
            .key(
                "sk",
                s(stats_sk(minute_of(accepted_at), shard_of(pk), key_id)),
            )
            .expression_attribute_values(":exp", self.expires_at());
        let mut adds = Vec::new();
        for (i, (name, delta)) in deltas.into_iter().enumerate() {
            adds.push(format!("#a{i} :d{i}"));
            counts = counts
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":d{i}"), n(delta));
        }
        let counts =
            counts.update_expression(format!("SET expiresAt = :exp ADD {}", adds.join(", ")));
        let built = |u: Result<TxUpdate, _>| {
            u.map(|u| TransactWriteItem::builder().update(u).build())
                .map_err(|e| MoveError::Failed(StoreError::caused_by("a count's request", e)))
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(built(mark.build())?)
            .transact_items(built(counts.build())?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_cancelled(&e) => Err(MoveError::Lost),
            Err(e) => Err(MoveError::Failed(error("cannot move a message's count", e))),
        }
    }

    /// A page of `search`: the index gives the matching messages' keys in
    /// order (it projects only what the filters read, so the writes that
    /// change a message's history do not write the index), then one
    /// consistent batch read gives their items.
    pub(super) async fn search_index(&self, search: &Search) -> Result<Found, StoreError> {
        let mut hits: Vec<Position> = Vec::new();
        let mut start = search.after.as_ref().map(|p| self.start_key(search, p));
        // One more than the page: whether another follows is then known.
        for _ in 0..MAX_PAGES {
            let want = search.limit + 1 - hits.len();
            let page = self
                .page_query(search, want, start.take())
                .send()
                .await
                .map_err(|e| error("cannot search the status table", e))?;
            hits.extend(page.items().iter().filter_map(position_of));
            start = page.last_evaluated_key().cloned();
            if hits.len() > search.limit || start.is_none() {
                break;
            }
        }
        let next = if hits.len() > search.limit {
            hits.truncate(search.limit);
            hits.last().cloned()
        } else {
            // The pages read ran out before the page filled: go on from there.
            start.as_ref().and_then(position_of)
        };
        let ids: Vec<String> = hits.iter().map(|p| p.id.clone()).collect();
        let mut items = self.message_items(&ids, None).await?;
        let records = ids
            .iter()
            .filter_map(|id| items.remove(id))
            .map(|item| record_from(&item))
            .collect();
        Ok(Found { records, next })
    }

    fn start_key(&self, search: &Search, p: &Position) -> Item {
        HashMap::from([
            ("pk".to_owned(), s(format!("msg#{}", p.id))),
            ("sk".to_owned(), s(SK)),
            ("listTenant".to_owned(), s(&search.owner.tenant)),
            ("acceptedAt".to_owned(), n(p.accepted_at_ms)),
        ])
    }

    fn page_query(
        &self,
        search: &Search,
        want: usize,
        start: Option<Item>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let f = &search.filters;
        let mut key = "listTenant = :tenant".to_owned();
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX)
            .scan_index_forward(false)
            .select(Select::AllProjectedAttributes)
            .limit(i32::try_from(want).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .expression_attribute_values(":tenant", s(&search.owner.tenant));
        match (f.since_ms, f.until_ms) {
            (Some(a), Some(b)) => {
                key.push_str(" AND acceptedAt BETWEEN :since AND :until");
                q = q
                    .expression_attribute_values(":since", n(a))
                    .expression_attribute_values(":until", n(b - 1));
            }
            (Some(a), None) => {
                key.push_str(" AND acceptedAt >= :since");
                q = q.expression_attribute_values(":since", n(a));
            }
            (None, Some(b)) => {
                key.push_str(" AND acceptedAt < :until");
                q = q.expression_attribute_values(":until", n(b));
            }
            (None, None) => {}
        }
        let mut filters = Vec::new();
        let equal = [
            ("apiKeyId", search.owner.api_key_id.clone()),
            ("to", f.to.clone()),
            ("curStatus", f.status.map(|s| s.as_str().to_owned())),
            ("curChannel", f.channel.clone()),
            ("sender", f.from.clone()),
            ("batchId", f.batch_id.clone()),
        ];
        for (i, (name, value)) in equal.into_iter().enumerate() {
            if let Some(v) = value {
                filters.push(format!("#f{i} = :f{i}"));
                q = q
                    .expression_attribute_names(format!("#f{i}"), name)
                    .expression_attribute_values(format!(":f{i}"), s(v));
            }
        }
        if !filters.is_empty() {
            q = q.filter_expression(filters.join(" AND "));
        }
        q.key_condition_expression(key)
    }

    /// The counters of `query`'s owner, summed per series bucket (over the
    /// range without a series) as the pages come: the answer's size follows
    /// the buckets and tallies, not the minutes read.
    pub(super) async fn read_counts(&self, query: &StatsQuery) -> Result<Vec<Bucket>, StoreError> {
        let mut sums: HashMap<(i64, String, String, String), (i64, i64)> = HashMap::new();
        let step = query.step_ms();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(format!("stats#{}", query.owner.tenant)))
                .expression_attribute_values(":from", s(minute_bound(query.since_ms)))
                .expression_attribute_values(":to", s(minute_bound(query.until_ms)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| error("cannot read the counters", e))?;
            for b in page.items().iter().flat_map(|item| buckets_of(item, query)) {
                let at = (b.at_ms.div_euclid(step) * step).max(query.since_ms);
                let sum = sums.entry((at, b.channel, b.status, b.code)).or_default();
                sum.0 += b.count;
                sum.1 += b.segments;
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(sums
                    .into_iter()
                    .map(
                        |((at_ms, channel, status, code), (count, segments))| Bucket {
                            at_ms,
                            channel,
                            status,
                            code,
                            count,
                            segments,
                        },
                    )
                    .collect());
            }
        }
    }
}

enum MoveError {
    /// Another writer moved the count first.
    Lost,
    Failed(StoreError),
}

fn is_cancelled<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "TransactionCanceledException")
}

/// The counters' sort key: the minute, the shard, then the key that sent.
fn stats_sk(minute_ms: i64, shard: u32, api_key_id: &str) -> String {
    format!("m#{minute_ms:013}#{shard}#{api_key_id}")
}

/// The bound of a minute in the counters' sort keys.
fn minute_bound(minute_ms: i64) -> String {
    format!("m#{minute_ms:013}")
}

/// The counters shard of the message item `pk`: its id's last hex digit.
fn shard_of(pk: &str) -> u32 {
    pk.chars().last().and_then(|c| c.to_digit(16)).unwrap_or(0) % SHARDS
}

/// The position of an index key (`LastEvaluatedKey`).
fn position_of(key: &Item) -> Option<Position> {
    Some(Position {
        accepted_at_ms: number(key, "acceptedAt")?,
        id: text(key, "pk")?.strip_prefix("msg#")?.to_owned(),
    })
}

/// The buckets of one counters item that `query` asks for.
fn buckets_of(item: &Item, query: &StatsQuery) -> Vec<Bucket> {
    let Some(sk) = text(item, "sk") else {
        return Vec::new();
    };
    let mut parts = sk.splitn(4, '#');
    let (Some("m"), Some(minute), Some(_shard), key) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Vec::new();
    };
    let Ok(at_ms) = minute.parse::<i64>() else {
        return Vec::new();
    };
    if query
        .owner
        .api_key_id
        .as_deref()
        .is_some_and(|k| Some(k) != key)
    {
        return Vec::new();
    }
    item.iter()
        .filter_map(|(name, value)| {
            let tally = Tally::from_key(name.strip_prefix("c|")?, 0)?;
            let count = value.as_n().ok()?.parse().ok()?;
            let segments = number(item, &format!("g|{}", tally.key())).unwrap_or(0);
            (query.channel.as_deref().is_none_or(|c| c == tally.channel)).then(|| Bucket {
                at_ms,
                channel: tally.channel.clone(),
                status: tally.status.as_str().to_owned(),
                code: tally.code.clone(),
                count,
                segments,
            })
        })
        .collect()
}
