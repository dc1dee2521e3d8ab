//! Customer-service windows in the DynamoDB table: one
//! `window#<phone_number_id>#<person>` item, `lastInboundAt` and `closedAt`
//! (Unix ms), each written only forward by a conditional update (webhooks
//! arrive in any order, and concurrently). Items expire with statuses.

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::BoxFuture;

use super::{DynamoStatusStore, SK, error, n, s};
use crate::status::StoreError;
use crate::window::store::WindowStore;
use crate::window::{Closure, Received, Window};

fn pk(number_id: &str, person: &str) -> AttributeValue {
    s(format!("window#{number_id}#{person}"))
}

impl DynamoStatusStore {
    /// Moves `attribute` of the window to `at_ms` unless it is later already.
    pub(super) async fn advance_window(
        &self,
        (number_id, person): (&str, &str),
        attribute: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(number_id, person))
            .key("sk", s(SK))
            .update_expression("SET #a = :t, expiresAt = :e")
            .condition_expression("attribute_not_exists(#a) OR #a < :t")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":t", n(at_ms))
            .expression_attribute_values(":e", self.expires_at())
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(error("cannot write a window", e)),
        }
    }
}

impl WindowStore for DynamoStatusStore {
    fn window<'a>(
        &'a self,
        number_id: &'a str,
        person: &'a str,
    ) -> BoxFuture<'a, Result<Window, StoreError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", pk(number_id, person))
                .key("sk", s(SK))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| error("cannot read a window", e))?;
            let number = |item: &super::Item, k: &str| {
                item.get(k)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
            };
            Ok(output.item.map_or_else(Window::default, |item| Window {
                last_inbound_ms: number(&item, "lastInboundAt"),
                closed_ms: number(&item, "closedAt"),
            }))
        })
    }

    fn received<'a>(
        &'a self,
        provider_message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Received>, StoreError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(format!("inbound#{provider_message_id}")))
                .key("sk", s(SK))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| error("cannot read an inbound message", e))?;
            let text =
                |item: &super::Item, k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            Ok(output.item.and_then(|item| {
                Some(Received {
                    number_id: text(&item, "numberId")?,
                    tenants: text(&item, "tenants")
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default(),
                })
            }))
        })
    }

    fn close_windows(&self, closures: Vec<Closure>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for c in &closures {
                self.advance_window((&c.number_id, &c.person), "closedAt", c.at_ms)
                    .await?;
            }
            Ok(())
        })
    }
}
