//! Cancelling with DynamoDB: `cancelled` and `handedAt` exclude each other
//! on the message's item. The consumer writes `handedAt` just before the
//! provider call, unless the `cancelled` entry is there; a cancel writes
//! its entry unless `handedAt` is. One conditional write each, so a message
//! is never both cancelled and sent, whichever comes first. A scheduled
//! message's schedule entry is removed after its cancel (if that fails, the
//! sweep publishes it and the consumer's `handedAt` write refuses it).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::ReturnValue;

use super::{DynamoStatusStore, Item, SK, error, history_attribute, n, record_from, s};
use crate::contract::Envelope;
use crate::status::{Cancellation, Entry, MessageRecord, Status, StoreError, now_ms};
use crate::tenants::Scope;

const HANDED: &str = "handedAt";

fn conditional_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

impl DynamoStatusStore {
    /// Message `id`'s item, read consistently.
    pub(super) async fn message_item(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("msg#{id}")))
            .key("sk", s(SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| error("cannot read a status", e))?;
        Ok(output.item)
    }

    /// Cancels each of `ids` in `scope`, in order; ids with no message
    /// item are left out.
    pub(super) async fn cancel_all(
        &self,
        ids: &[String],
        scope: &Scope,
        batch: Option<&str>,
    ) -> Result<Vec<Cancellation>, StoreError> {
        // Most ids a batch's cancel asks about are not there: one read per
        // hundred finds those that are.
        let ids: Vec<String> = if ids.len() > 1 {
            let found = self.existing(ids).await?;
            ids.iter()
                .filter(|id| found.contains(*id))
                .cloned()
                .collect()
        } else {
            ids.to_vec()
        };
        let mut outcomes = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::CONCURRENCY) {
            let cancels = chunk.iter().map(|id| self.cancel_one(id, scope, batch));
            for outcome in futures_util::future::join_all(cancels).await {
                outcomes.push(outcome?);
            }
        }
        Ok(outcomes)
    }

    /// Cancels message `id` in `scope` (see the module documentation).
    async fn cancel_one(
        &self,
        id: &str,
        scope: &Scope,
        batch: Option<&str>,
    ) -> Result<Cancellation, StoreError> {
        let Some(item) = self.message_item(id).await? else {
            return Ok(Cancellation::NotFound);
        };
        let record = record_from(&item);
        let in_batch = batch.is_none() || record.batch_id.as_deref() == batch;
        if !scope.covers(&record.api_key_id, &record.tenant) || !in_batch {
            return Ok(Cancellation::NotFound);
        }
        match record.status() {
            Some(Status::Cancelled) => {
                // Again, or a retry of a cancel whose event or count failed: both once-only.
                self.emit_status(&item).await?;
                self.count(&item).await?;
                return Ok(Cancellation::Cancelled(record));
            }
            Some(Status::Accepted) if !item.contains_key(HANDED) => {}
            _ => return Ok(Cancellation::AlreadySent(record)),
        }
        let entry = Entry::on(&record.channel, now_ms());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("msg#{id}")))
            .key("sk", s(SK))
            .update_expression("SET #h = if_not_exists(#h, :h), updatedAt = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(#handed)")
            .expression_attribute_names("#h", history_attribute(Status::Cancelled, &entry))
            .expression_attribute_names("#handed", HANDED)
            .expression_attribute_values(
                ":h",
                s(serde_json::to_string(&entry).expect("an entry serialises")),
            )
            .expression_attribute_values(":now", n(now_ms()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match result {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(e) if conditional_failed(&e) => {
                return Ok(Cancellation::AlreadySent(self.reread(id, record).await));
            }
            Err(e) => return Err(error("cannot cancel a message", e)),
        };
        self.emit_status(&item).await?;
        self.count(&item).await?;
        let record = record_from(&item);
        if let Some(due) = record.scheduled_for_ms
            && let Err(e) = self.unschedule(id, due).await
        {
            tracing::warn!(message_id = id, error.message = %e, "cancelled, but its schedule entry stays: the consumer will refuse it when it comes due");
        }
        Ok(Cancellation::Cancelled(record))
    }

    /// Which of `ids` have a message item (a batch's cancel looks up every
    /// id its entries could have).
    async fn existing(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        Ok(self
            .message_items(ids, Some("pk"))
            .await?
            .into_keys()
            .collect())
    }

    /// The message items of `ids` that exist, by id (only the attributes
    /// `projection` names, if given): one consistent `BatchGetItem` per 100.
    pub(super) async fn message_items(
        &self,
        ids: &[String],
        projection: Option<&str>,
    ) -> Result<HashMap<String, Item>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = HashMap::new();
        for chunk in ids.chunks(100) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|id| {
                    Item::from([
                        ("pk".to_owned(), s(format!("msg#{id}"))),
                        ("sk".to_owned(), s(SK)),
                    ])
                })
                .collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .set_projection_expression(projection.map(str::to_owned))
                    .build()
                    .map_err(|e| StoreError::caused_by("cannot build a batch read", e))?,
            );
            // Unprocessed keys (throttling) are asked again, a few times,
            // further apart each time; keys left after that are an error
            // (a cancel that cannot see an entry must not answer 200).
            for round in 0..5u32 {
                let Some(keys) = request.take() else { break };
                if round > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << round)).await;
                }
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| error("cannot read messages", e))?;
                for item in output
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(id) = item
                        .get("pk")
                        .and_then(|v| v.as_s().ok())
                        .and_then(|pk| pk.strip_prefix("msg#"))
                    {
                        found.insert(id.to_owned(), item);
                    }
                }
                request = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
            if request.is_some() {
                return Err(StoreError::new(
                    "some messages could not be read; try again",
                ));
            }
        }
        Ok(found)
    }

    async fn reread(&self, id: &str, fallback: MessageRecord) -> MessageRecord {
        match self.message_item(id).await {
            Ok(Some(item)) => record_from(&item),
            _ => fallback,
        }
    }

    /// Marks `envelope`'s message handed to a provider unless it was
    /// cancelled: `Ok(false)` when it was.
    pub(super) async fn hand_over(&self, envelope: &Envelope) -> Result<bool, StoreError> {
        let entry = Entry::on(envelope.first_channel().as_str(), 0);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("msg#{}", envelope.id)))
            .key("sk", s(SK))
            .update_expression("SET #handed = if_not_exists(#handed, :now), expiresAt = :exp")
            .condition_expression("attribute_not_exists(#c)")
            .expression_attribute_names("#handed", HANDED)
            .expression_attribute_names("#c", history_attribute(Status::Cancelled, &entry))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":exp", self.expires_at())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(error("cannot mark a message handed to its provider", e)),
        }
    }
}
