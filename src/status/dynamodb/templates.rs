//! Templates in the DynamoDB table, under `pk` `templates#<waba-id>`: one
//! item per template (`sk` `t#<name>#<language>`, the template as JSON in
//! `template`), the last listing (`sk` `sync`, `syncedAt`) and the fleet's
//! sync claim (`sk` `lease`: `holder`, `until`, taken by a conditional
//! update). Template items do not expire.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::BoxFuture;

use super::{DynamoStatusStore, error, n, s};
use crate::clock::now_ms;
use crate::status::StoreError;
use crate::templates::store::{Stored, TemplateStore, apply_status, merge_listing};
use crate::templates::{Listing, StatusChange, Template};

/// Puts and deletes in flight during a replace.
const WRITES_IN_FLIGHT: usize = 8;

fn pk(waba_id: &str) -> AttributeValue {
    s(format!("templates#{waba_id}"))
}

fn sk(t: &Template) -> String {
    format!("t#{}#{}", t.name, t.language)
}

impl DynamoStatusStore {
    async fn put_template(&self, t: &Template) -> Result<(), StoreError> {
        let body = serde_json::to_string(t).expect("a template serialises");
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(&t.waba_id))
            .item("sk", s(sk(t)))
            .item("template", s(body))
            .send()
            .await
            .map_err(|e| error("cannot write a template", e))?;
        Ok(())
    }

    async fn delete_template(&self, waba_id: &str, sort_key: String) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", pk(waba_id))
            .key("sk", s(sort_key))
            .send()
            .await
            .map_err(|e| error("cannot delete a template", e))?;
        Ok(())
    }

    /// Every item under the account's key.
    async fn account_items(&self, waba_id: &str) -> Result<Vec<super::Item>, StoreError> {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", pk(waba_id))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| error("cannot read templates", e))
    }
}

fn template_of(item: &super::Item) -> Option<Template> {
    let body = item.get("template")?.as_s().ok()?;
    serde_json::from_str(body).ok()
}

impl TemplateStore for DynamoStatusStore {
    fn templates<'a>(&'a self, waba_id: &'a str) -> BoxFuture<'a, Result<Stored, StoreError>> {
        Box::pin(async move {
            let items = self.account_items(waba_id).await?;
            let synced_ms = items
                .iter()
                .find(|i| {
                    i.get("sk")
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|k| k == "sync")
                })
                .and_then(|i| i.get("syncedAt")?.as_n().ok()?.parse().ok());
            Ok(Stored {
                synced_ms,
                templates: items.iter().filter_map(template_of).collect(),
            })
        })
    }

    fn replace_templates<'a>(
        &'a self,
        waba_id: &'a str,
        listing: Listing,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let items = self.account_items(waba_id).await?;
            let stored: Vec<Template> = items.iter().filter_map(template_of).collect();
            let templates = merge_listing(&listing, &stored);
            let keep: std::collections::HashSet<String> = templates.iter().map(sk).collect();
            let gone: Vec<String> = items
                .iter()
                .filter_map(|i| i.get("sk")?.as_s().ok().cloned())
                .filter(|k| k.starts_with("t#") && !keep.contains(k))
                .collect();
            for chunk in templates.chunks(WRITES_IN_FLIGHT) {
                futures_util::future::try_join_all(chunk.iter().map(|t| self.put_template(t)))
                    .await?;
            }
            for chunk in gone.chunks(WRITES_IN_FLIGHT) {
                futures_util::future::try_join_all(
                    chunk
                        .iter()
                        .map(|k| self.delete_template(waba_id, k.clone())),
                )
                .await?;
            }
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", pk(waba_id))
                .item("sk", s("sync"))
                .item("syncedAt", n(listing.synced_ms))
                .send()
                .await
                .map_err(|e| error("cannot note a template sync", e))?;
            Ok(())
        })
    }

    fn change_template_status(
        &self,
        change: StatusChange,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let key = format!("t#{}#{}", change.name, change.language);
            let current = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", pk(&change.waba_id))
                .key("sk", s(key))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| error("cannot read a template", e))?;
            let mut list: Vec<Template> = current
                .item
                .as_ref()
                .and_then(template_of)
                .into_iter()
                .collect();
            apply_status(&mut list, &change);
            for t in &list {
                self.put_template(t).await?;
            }
            Ok(())
        })
    }

    fn claim_template_sync<'a>(
        &'a self,
        waba_id: &'a str,
        holder: &'a str,
        every: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            // Held a little short of the period, so the holder's next
            // claim, a period later, finds it free or its own.
            let until = now + i64::try_from(every.as_millis()).unwrap_or(i64::MAX / 2) * 9 / 10;
            let claimed = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", pk(waba_id))
                .key("sk", s("lease"))
                .update_expression("SET holder = :h, #u = :u")
                .condition_expression("attribute_not_exists(holder) OR #u < :now OR holder = :h")
                .expression_attribute_names("#u", "until")
                .expression_attribute_values(":h", s(holder))
                .expression_attribute_values(":u", n(until))
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match claimed {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(error("cannot claim the template sync", e)),
            }
        })
    }

    fn release_template_sync<'a>(
        &'a self,
        waba_id: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let released = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", pk(waba_id))
                .key("sk", s("lease"))
                .update_expression("SET #u = :zero")
                .condition_expression("holder = :h")
                .expression_attribute_names("#u", "until")
                .expression_attribute_values(":h", s(holder))
                .expression_attribute_values(":zero", n(0))
                .send()
                .await;
            match released {
                Ok(_) => Ok(()),
                // Another gateway holds it already.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(error("cannot release the template sync", e)),
            }
        })
    }
}
