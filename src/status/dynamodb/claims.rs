//! Once-only work on a DynamoDB item, claimed by a conditional write: an
//! event published for a status or an inbound message, a failover sent.
//! Several writers (gateways, consumers, webhook deliveries) may reach the
//! same work at once; the first conditional write wins it, the others see
//! it `Held` or `Done`. A claim is a lease ([`LEASE_MS`]): a writer that
//! died holding one (its webhook unanswered, its SQS message not deleted)
//! leaves it to the next attempt of its source once the lease has passed,
//! so the work is done at least once, and once when nothing fails.
//!
//! The marker attribute holds `claimed:<ms>` (13 digits, so string order is
//! time order) while a writer works, and `done` after.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoStatusStore, SK, error, s};
use crate::status::{StoreError, now_ms};

/// How long a claim holds before another writer may take it over: more than
/// twice the longest AWS call (`AWS_OPERATION_TIMEOUT_MS` is at most 300 s),
/// so a slow publish is never taken over and done twice; a crashed writer's
/// work is redone by its source's next attempt after it (Meta retries for
/// days, SQS redelivers).
pub const LEASE_MS: i64 = 10 * 60_000;

const DONE: &str = "done";

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This writer does the work, then calls [`DynamoStatusStore::finish`].
    Mine,
    /// It was done.
    Done,
    /// Another writer is doing it now.
    Held,
}

impl DynamoStatusStore {
    /// Claims the work marked by `marker` on item `pk`.
    pub(super) async fn claim(
        &self,
        pk: &AttributeValue,
        marker: &str,
    ) -> Result<Claimed, StoreError> {
        let now = now_ms();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk.clone())
            .key("sk", s(SK))
            .update_expression("SET #m = :claim")
            .condition_expression(
                "attribute_not_exists(#m) OR (begins_with(#m, :claimed) AND #m < :stale)",
            )
            .expression_attribute_names("#m", marker)
            .expression_attribute_values(":claim", s(format!("claimed:{now:013}")))
            .expression_attribute_values(":claimed", s("claimed:"))
            .expression_attribute_values(":stale", s(format!("claimed:{:013}", now - LEASE_MS)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claimed::Mine),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.marker(pk, marker).await
            }
            Err(e) => Err(error("cannot claim once-only work", e)),
        }
    }

    /// Whether the work marked by `marker` is done or held (after a lost claim).
    async fn marker(&self, pk: &AttributeValue, marker: &str) -> Result<Claimed, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk.clone())
            .key("sk", s(SK))
            .consistent_read(true)
            .projection_expression("#m")
            .expression_attribute_names("#m", marker)
            .send()
            .await
            .map_err(|e| error("cannot read a claim", e))?;
        let value = output
            .item
            .and_then(|item| item.get(marker).and_then(|v| v.as_s().ok()).cloned());
        Ok(match value.as_deref() {
            Some(DONE) => Claimed::Done,
            _ => Claimed::Held,
        })
    }

    /// Marks claimed work done.
    pub(super) async fn finish(&self, pk: &AttributeValue, marker: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk.clone())
            .key("sk", s(SK))
            .update_expression("SET #m = :done")
            .expression_attribute_names("#m", marker)
            .expression_attribute_values(":done", s(DONE))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| error("cannot mark once-only work done", e))
    }

    /// Gives a claim back after the work failed, so the next attempt need not
    /// wait for the lease (best effort: the lease ends it anyway).
    pub(super) async fn release(&self, pk: &AttributeValue, marker: &str) {
        let _ = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk.clone())
            .key("sk", s(SK))
            .update_expression("REMOVE #m")
            .condition_expression("begins_with(#m, :claimed)")
            .expression_attribute_names("#m", marker)
            .expression_attribute_values(":claimed", s("claimed:"))
            .send()
            .await;
    }

    /// Does the once-only work marked by `marker` on item `pk` with `work`,
    /// unless it was done: `Err` when another writer holds it (the caller's
    /// source retries, and finds it done, or the holder's lease passed).
    pub(super) async fn once<F, Fut>(
        &self,
        pk: &AttributeValue,
        marker: &str,
        work: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        match self.claim(pk, marker).await? {
            Claimed::Done => Ok(()),
            Claimed::Held => Err(StoreError::new(format!(
                "{marker} is being done by another writer; retry"
            ))),
            Claimed::Mine => match work().await {
                // Done: never released now, whatever happens to the mark
                // (its lease is all that could let the work be done again).
                Ok(()) => match self.finish(pk, marker).await {
                    Err(_) => self.finish(pk, marker).await,
                    done => done,
                },
                Err(e) => {
                    self.release(pk, marker).await;
                    Err(e)
                }
            },
        }
    }
}
