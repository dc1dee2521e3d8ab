//! Scheduled sends with SNS: messages due later wait in the status table,
//! not in SQS, so waiting spends no receive and no delivery attempt, and a
//! schedule may reach `SCHEDULE_MAX_DAYS` (SQS keeps a message 14 days at
//! most). The gateways sweep it ([`crate::schedule::sweep`]).
//!
//! Item layout: `pk = "sched#<shard>"` (one of [`SHARDS`], from the message
//! id, so that many schedules spread over partitions), `sk =
//! "<due ms, 13 digits>#<message id>"` (string order is time order, so one
//! query per shard finds what is due), `envelope` (JSON), `leaseUntil` (ms,
//! while a gateway publishes it), `expiresAt` (TTL: the status TTL after
//! the due time). A sweep reads each shard's due items, claims each by a
//! conditional write on `leaseUntil`, publishes it and deletes it.

use super::{DynamoStatusStore, error, n, s};
use crate::contract::Envelope;
use crate::schedule::{Due, ScheduleStore};
use crate::status::{BoxFuture, StoreError};

/// Partitions of the schedule.
pub const SHARDS: u32 = 8;
/// How long a claim holds, from the claim: more than twice the longest AWS
/// call (as [`super::claims::LEASE_MS`]), so a slow publish is never taken
/// over and published twice; a gateway that died holding one leaves it to
/// a sweep after it. A publish that fails gives its claim back at once.
const LEASE_MS: i64 = super::claims::LEASE_MS;

fn shard(id: &str) -> u32 {
    id.bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % SHARDS
}

fn key(id: &str, due_ms: i64) -> (String, String) {
    (format!("sched#{}", shard(id)), format!("{due_ms:013}#{id}"))
}

impl DynamoStatusStore {
    /// A scheduled message's TTL: its status TTL after it is due, not after
    /// now (a 35-day schedule outlives a 30-day TTL).
    pub(super) fn expires_after_due(&self, due_ms: i64) -> aws_sdk_dynamodb::types::AttributeValue {
        n(due_ms.max(crate::clock::now_ms()) / 1000 + self.ttl.as_secs() as i64)
    }

    /// Removes message `id`'s schedule entry (a cancel).
    pub(super) async fn unschedule(&self, id: &str, due_ms: i64) -> Result<(), StoreError> {
        let (pk, sk) = key(id, due_ms);
        self.remove_item(pk, sk).await
    }

    async fn remove_item(&self, pk: String, sk: String) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(|e| error("cannot remove a schedule entry", e))?;
        Ok(())
    }

    async fn due_in(&self, shard: u32, now_ms: i64, limit: i32) -> Result<Vec<Due>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk <= :now")
            .filter_expression("attribute_not_exists(leaseUntil) OR leaseUntil < :ms")
            .expression_attribute_values(":pk", s(format!("sched#{shard}")))
            .expression_attribute_values(":now", s(format!("{now_ms:013}#~")))
            .expression_attribute_values(":ms", n(now_ms))
            .limit(limit)
            .send()
            .await
            .map_err(|e| error("cannot read the schedule", e))?;
        let text = |item: &super::Item, k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        Ok(output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                Some(Due {
                    pk: text(item, "pk")?,
                    sk: text(item, "sk")?,
                    envelope: text(item, "envelope")?,
                })
            })
            .collect())
    }
}

impl ScheduleStore for DynamoStatusStore {
    fn put<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let due = envelope.send_at.map_or(0, |at| at.timestamp_millis());
            let (pk, sk) = key(&envelope.id.to_string(), due);
            let expires = due / 1000 + self.ttl.as_secs() as i64;
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(pk))
                .item("sk", s(sk))
                .item("envelope", s(envelope.to_json()))
                .item("expiresAt", n(expires))
                .send()
                .await
                .map_err(|e| error("cannot schedule a message", e))?;
            Ok(())
        })
    }

    fn due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<Due>, StoreError>> {
        Box::pin(async move {
            let per_shard = i32::try_from(limit).unwrap_or(i32::MAX);
            let mut all = Vec::new();
            for shard in 0..SHARDS {
                all.extend(self.due_in(shard, now_ms, per_shard).await?);
            }
            Ok(all)
        })
    }

    fn claim<'a>(&'a self, due: &'a Due, now_ms: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let now_ms = now_ms.max(crate::clock::now_ms());
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&due.pk))
                .key("sk", s(&due.sk))
                .update_expression("SET leaseUntil = :until")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)",
                )
                .expression_attribute_values(":until", n(now_ms + LEASE_MS))
                .expression_attribute_values(":now", n(now_ms))
                .send()
                .await;
            match result {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(error("cannot claim a schedule entry", e)),
            }
        })
    }

    fn remove<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.remove_item(due.pk.clone(), due.sk.clone()))
    }

    fn release<'a>(&'a self, due: &'a Due) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&due.pk))
                .key("sk", s(&due.sk))
                .update_expression("REMOVE leaseUntil")
                .condition_expression("attribute_exists(pk)")
                .send()
                .await
                .map_err(|e| error("cannot give back a schedule claim", e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_due_time_and_spread_over_the_shards() {
        let (_, early) = key("a", 1_000);
        let (_, late) = key("a", 2_000_000_000_000);
        assert!(early < late);
        let shards: std::collections::HashSet<u32> = (0..100)
            .map(|_| shard(&uuid::Uuid::now_v7().to_string()))
            .collect();
        assert!(shards.len() > 4, "{shards:?}");
    }
}
