//! Opt-outs in the DynamoDB table: one item per tenant and number,
//! `optout#<number>` for the tenant `default` (the key of items written
//! before tenants) and `optout#<tenant>#<number>` for the others,
//! changed by a read and a put conditional on the item's `updatedAt` (so
//! concurrent changes never overwrite each other), in the person's order
//! ([`optout::apply_in_order`]).
//!
//! A change's event travels with the change: the put that changes the
//! channels also writes the event (`pendingEvent`, `pendingEventId`,
//! `pendingEventChannel`), which is then published and cleared. An event
//! whose publish failed is published by the next change of that number,
//! before anything else, including the provider's retry of the same webhook
//! (which the ordering refuses as a replay): at least once, never lost.

use super::{DynamoStatusStore, SK, error, event_error, n, s};
use crate::optout::{self, OptOut, OptOutUpdate, Ordering};
use crate::status::events::{self, Event};
use crate::status::{StoreError, format_ms, now_ms};

/// An opt-out item as read: what the API shows, and what orders changes.
pub(super) struct StoredOptOut {
    pub(super) opt_out: OptOut,
    ordering: Ordering,
    /// The item's `updatedAt`: every write's, so it tells writers apart.
    updated_ms: i64,
    /// When the channels last changed.
    changed_ms: i64,
    /// An event written with the last change and not yet published.
    pending_event: Option<Event>,
}

impl DynamoStatusStore {
    /// Reads an opt-out item, with or without channels.
    pub(super) async fn read_opt_out(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<Option<StoredOptOut>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk(tenant, number)))
            .key("sk", s(SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| error("cannot read an opt-out", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let number_of = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        let updated = number_of("updatedAt").unwrap_or_default();
        let changed = number_of("changedAt").unwrap_or(updated);
        let pending_event = match (text("pendingEventId"), text("pendingEvent")) {
            (Some(id), Some(body)) => Some(Event {
                id,
                kind: "recipient.opt-out",
                channel: text("pendingEventChannel").unwrap_or_default(),
                status: None,
                body,
            }),
            _ => None,
        };
        Ok(Some(StoredOptOut {
            opt_out: OptOut {
                tenant: tenant.to_owned(),
                number: number.to_owned(),
                channels: text("channels")
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .unwrap_or_default(),
                source: text("source").unwrap_or_default(),
                updated_at: format_ms(changed),
            },
            ordering: Ordering::parse(text("ordering").as_deref()),
            updated_ms: updated,
            changed_ms: changed,
            pending_event,
        }))
    }

    /// Publishes an event written with a change, then clears it (if it is
    /// still the one written: a later change may have written its own).
    async fn publish_pending(&self, key: &str, event: &Event) -> Result<(), StoreError> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        events.publish(event).await.map_err(event_error)?;
        let cleared = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("optout#{key}")))
            .key("sk", s(SK))
            .update_expression("REMOVE pendingEvent, pendingEventId, pendingEventChannel")
            .condition_expression("pendingEventId = :id")
            .expression_attribute_values(":id", s(&event.id))
            .send()
            .await;
        match cleared {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(error("cannot clear a published opt-out event", e)),
        }
    }

    /// Applies one opt-out change in the person's order: read, compute, and
    /// write on condition that nobody wrote in between (retried a few times
    /// when someone did); an event left by an earlier change goes first.
    pub(super) async fn change_opt_out(&self, update: &OptOutUpdate) -> Result<(), StoreError> {
        for _ in 0..5 {
            let current = self.read_opt_out(&update.tenant, &update.number).await?;
            if let Some(event) = current.as_ref().and_then(|c| c.pending_event.as_ref()) {
                self.publish_pending(&update.key(), event).await?;
            }
            let (before, ordering) = current.as_ref().map_or_else(Default::default, |c| {
                (c.opt_out.channels.clone(), c.ordering.clone())
            });
            let Some(applied) = optout::apply_in_order(&before, &ordering, update) else {
                return Ok(());
            };
            // Strictly increasing, so the condition below always tells writers apart.
            let now = now_ms().max(current.as_ref().map_or(0, |c| c.updated_ms + 1));
            let (source, changed_at) = match (&current, applied.changed) {
                (Some(c), false) => (c.opt_out.source.clone(), c.changed_ms),
                _ => (update.source.clone(), now),
            };
            let event = (applied.changed && self.events.is_some())
                .then(|| events::opt_out_event(update, &applied.channels, now));
            let mut request = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(format!("optout#{}", update.key())))
                .item("sk", s(SK))
                .item(
                    "channels",
                    s(serde_json::to_string(&applied.channels).expect("a set serialises")),
                )
                .item("ordering", s(applied.ordering.to_json()))
                .item("source", s(source))
                .item("changedAt", n(changed_at))
                .item("updatedAt", n(now))
                .item("expiresAt", n(i64::MAX / 2_000));
            if let Some(event) = &event {
                request = request
                    .item("pendingEvent", s(&event.body))
                    .item("pendingEventId", s(&event.id))
                    .item("pendingEventChannel", s(&event.channel));
            }
            request = match &current {
                Some(c) => request
                    .condition_expression("updatedAt = :seen")
                    .expression_attribute_values(":seen", n(c.updated_ms)),
                None => request.condition_expression("attribute_not_exists(pk)"),
            };
            match request.send().await {
                Ok(_) => {
                    if applied.changed {
                        crate::metrics::opt_out_change(&update.source);
                    }
                    return match &event {
                        Some(event) => self.publish_pending(&update.key(), event).await,
                        None => Ok(()),
                    };
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(error("cannot write an opt-out", e)),
            }
        }
        Err(StoreError::new(format!(
            "the opt-out of {} kept changing under this write",
            crate::domain::phone_number::mask_digits(update.number.trim_start_matches('+'))
        )))
    }
}

/// The item key of `tenant`'s opt-out of `number`.
fn pk(tenant: &str, number: &str) -> String {
    format!("optout#{}", optout::consent_key(tenant, number))
}
