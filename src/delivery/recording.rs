//! What the pipeline reads from and writes to the status store: before a
//! delivery, the recipient's opt-out and whether the message already failed
//! over; after it, `submitted` with the provider's id, or `failed` (with its
//! event).
//!
//! The provider has answered by then, so the delivery's outcome must not
//! depend on the store, and the status must not be lost either (events are
//! promised at least once). A write is retried a few times (about a second);
//! past that, with SNS, the envelope is published again to the gateway's
//! topic carrying the status ([`PendingStatus`], envelope version 2), and the
//! consumer that receives it records the status instead of sending: the
//! message goes once, its status and event come later. A store still
//! unavailable then keeps the record in the queue, retried every
//! [`PENDING_RETRY`] without counting an attempt (the queue's redrive policy
//! moves it to the dead-letter queue after `maxReceiveCount`, from where a
//! redrive records it). Only when the topic cannot be published to either is
//! the status lost, logged at error level.

use std::time::Duration;

use serde_json::Value;

use super::{Decision, FailureClass, Pipeline, STATUS_WRITE_ATTEMPTS};
use crate::contract::{Envelope, PendingStatus};
use crate::status::{
    Entry, ErrorCode, FailureMark, MessageInfo, Status, StatusError, StoreError, Update,
};

/// Where statuses the store would not take travel again (the gateway's topic).
pub(super) struct Outbox(pub(super) std::sync::Arc<dyn crate::publisher::Publisher>);

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

/// How long a status record waits in the queue before the store is tried again.
const PENDING_RETRY: Duration = Duration::from_secs(30);

impl Pipeline {
    /// Records `submitted` (with the provider's id) or `failed` for a decision
    /// that ends the message's delivery. The message has left already, so the
    /// delivery's outcome does not depend on it: a store that cannot be
    /// written is retried a few times, then the status travels again through
    /// the outbox (see the module documentation).
    pub(super) async fn record_status(
        &self,
        envelope: &Envelope,
        attempt: u32,
        decision: &Decision,
    ) {
        if self.statuses.is_none() {
            return;
        }
        let channel = envelope.channel.as_str();
        let failed = |code: Option<i64>, title: &str, class: FailureMark| StatusError {
            code: code.map(Into::into),
            title: title.to_owned(),
            channel: channel.to_owned(),
            class: Some(class),
        };
        let (status, provider_message_id, error) = match decision {
            Decision::Delivered { provider_id } => {
                (Status::Submitted, Some(provider_id.clone()), None)
            }
            Decision::GiveUp { code, reason } => {
                // A failure that means "cannot reach the person here" is
                // marked so, which is what sends a fallback (now or, after a
                // retryable SMS failure, on the next attempt).
                let unreachable = code.is_some_and(|c| {
                    self.channels
                        .for_envelope(envelope)
                        .is_some_and(|ch| ch.cannot_reach(c))
                });
                let class = if unreachable {
                    FailureMark::Unreachable
                } else {
                    FailureMark::Permanent
                };
                (Status::Failed, None, Some(failed(*code, reason, class)))
            }
            Decision::DeadLetter { reason } => (
                Status::Failed,
                None,
                Some(failed(None, reason, FailureMark::DeadLetter)),
            ),
            Decision::Retry { .. } | Decision::Cancelled => return,
        };
        self.write_status(envelope, attempt, status, provider_message_id, error)
            .await;
    }

    /// Writes one status of `envelope`'s leg, retrying a store that fails a
    /// few times; past them the status goes through the outbox.
    pub(super) async fn write_status(
        &self,
        envelope: &Envelope,
        attempt: u32,
        status: Status,
        provider_message_id: Option<String>,
        error: Option<StatusError>,
    ) {
        let entry = Entry {
            error,
            ..Entry::on(
                envelope.channel.as_str(),
                chrono::Utc::now().timestamp_millis(),
            )
            .by_attempt(attempt)
        };
        if let Err(e) = self
            .store_status(envelope, status, entry.clone(), provider_message_id.clone())
            .await
        {
            let pending = PendingStatus {
                status: status.as_str().to_owned(),
                entry: serde_json::to_value(&entry).expect("an entry serialises"),
                provider_message_id,
            };
            self.send_to_outbox(envelope, pending, &e).await;
        }
    }

    /// One status write, retried a few times with growing pauses.
    async fn store_status(
        &self,
        envelope: &Envelope,
        status: Status,
        entry: Entry,
        provider_message_id: Option<String>,
    ) -> Result<(), StoreError> {
        let Some(store) = &self.statuses else {
            return Ok(());
        };
        let update = Update::Message {
            info: MessageInfo::of(envelope),
            status,
            entry,
            provider_message_id,
        };
        let mut wait = Duration::from_millis(50);
        let mut left = STATUS_WRITE_ATTEMPTS;
        loop {
            match store.record(vec![update.clone()], Vec::new()).await {
                Ok(()) => return Ok(()),
                Err(e) if left <= 1 => return Err(e),
                Err(_) => {
                    left -= 1;
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
            }
        }
    }

    /// Publishes `envelope` carrying `pending` to the outbox, so that the
    /// consumer that receives it records the status; without an outbox, or
    /// when it fails too, the status is lost and logged at error level.
    async fn send_to_outbox(
        &self,
        envelope: &Envelope,
        pending: PendingStatus,
        cause: &StoreError,
    ) {
        let status = pending.status.clone();
        let cause = crate::telemetry::chain(cause);
        let Some(outbox) = &self.status_outbox else {
            tracing::error!(status, error.message = %cause,
                "could not record the message's status, and there is no outbox (SNS_TOPIC_ARN) to keep it: its status and event are lost");
            return;
        };
        match outbox
            .0
            .publish(&envelope.with_pending_status(pending))
            .await
        {
            Ok(_) => tracing::warn!(status, error.message = %cause,
                "could not record the message's status yet: it travels again through the topic and is recorded when it comes back"),
            Err(e) => tracing::error!(status, error.message = %cause, outbox.error = %e,
                "could not record the message's status, nor publish it to the outbox: its status and event are lost"),
        }
    }

    /// Records a status that travelled through the outbox: acknowledged once
    /// written; a store still unavailable keeps it in the queue for later
    /// (an attempt that does not count: nothing is sent).
    pub(super) async fn record_pending(
        &self,
        envelope: &Envelope,
        pending: &PendingStatus,
    ) -> Decision {
        let parsed = (
            serde_json::from_value::<Status>(Value::String(pending.status.clone())),
            serde_json::from_value::<Entry>(pending.entry.clone()),
        );
        let (Ok(status), Ok(entry)) = parsed else {
            return Decision::DeadLetter {
                reason: "unreadable pending status".into(),
            };
        };
        match self
            .store_status(envelope, status, entry, pending.provider_message_id.clone())
            .await
        {
            Ok(()) => Decision::Delivered {
                provider_id: pending.provider_message_id.clone().unwrap_or_default(),
            },
            Err(e) => Decision::Retry {
                after: PENDING_RETRY,
                class: FailureClass::Retryable,
                code: None,
                reason: format!(
                    "the status store is still unavailable: {}",
                    crate::telemetry::chain(&e)
                ),
                counted: false,
            },
        }
    }
    /// True when the status store shows that `envelope`'s first leg failed in
    /// a way that sent it by its fallback (false when unknown: the store is
    /// not configured or cannot be read, and the attempt starts over).
    pub(super) async fn failed_over_before(&self, envelope: &Envelope) -> bool {
        let Some(store) = &self.statuses else {
            return false;
        };
        match store
            .get(&envelope.id.to_string(), &crate::tenants::Scope::Admin)
            .await
        {
            Ok(Some(record)) => record
                .history
                .get(&Status::Failed)
                .is_some_and(Entry::fails_over),
            _ => false,
        }
    }

    /// Marks the message handed to its provider, just before the call
    /// ([`crate::status::StatusStore::hand`]): `None` to send it; `Cancelled`
    /// when a cancel came first; a hold (no attempt spent: nothing was sent)
    /// when the store cannot be written (a cancelled message is never sent
    /// on a guess, as an opt-out is not).
    pub(super) async fn hand(&self, envelope: &Envelope, attempt: u32) -> Option<Decision> {
        let store = self.statuses.as_ref()?;
        match store.hand(envelope).await {
            Ok(true) => None,
            Ok(false) => Some(Decision::Cancelled),
            Err(e) => Some(Decision::Retry {
                after: self.retry.delay(FailureClass::Retryable, attempt, None),
                class: FailureClass::Retryable,
                code: None,
                reason: format!("cannot mark the message handed to its provider: {e}"),
                // Nothing was sent: an outage spends no attempt.
                counted: false,
            }),
        }
    }

    /// Gives a message up before any provider was asked: recorded as
    /// `failed` with Herald's `code` (permanent), and not sent.
    pub(super) async fn refuse(
        &self,
        envelope: &Envelope,
        attempt: u32,
        code: &str,
        reason: String,
    ) -> Decision {
        let error = StatusError {
            code: Some(ErrorCode::Name(code.into())),
            title: reason.clone(),
            channel: envelope.channel.as_str().to_owned(),
            class: Some(FailureMark::Permanent),
        };
        self.write_status(envelope, attempt, Status::Failed, None, Some(error))
            .await;
        Decision::GiveUp { code: None, reason }
    }

    /// The decision for a message whose recipient opted out of its channel
    /// (recorded as `failed`, code `opted-out`), or `None` to send it. The
    /// check reads the store each time, so a STOP that came after the
    /// gateway's check still holds the message back; a store that cannot be
    /// read is a retry, never a send.
    pub(super) async fn opted_out(&self, envelope: &Envelope, attempt: u32) -> Option<Decision> {
        let store = self.statuses.as_ref()?;
        match self.opt_out_of(store.as_ref(), envelope).await {
            Ok(Some(o)) if o.blocks(envelope.channel) => {
                let reason = format!("the recipient opted out of {}", envelope.channel.as_str());
                Some(self.refuse(envelope, attempt, "opted-out", reason).await)
            }
            Ok(_) => None,
            Err(e) => Some(Decision::Retry {
                after: self.retry.delay(FailureClass::Retryable, attempt, None),
                class: FailureClass::Retryable,
                code: None,
                reason: format!("cannot check the recipient's opt-out: {e}"),
                counted: true,
            }),
        }
    }

    /// The first opt-out that blocks `envelope`'s channel among the tenants
    /// whose consent it honours, else the sender tenant's own (or none).
    async fn opt_out_of(
        &self,
        store: &dyn crate::status::StatusStore,
        envelope: &Envelope,
    ) -> Result<Option<crate::optout::OptOut>, StoreError> {
        let mut own = None;
        for holder in self
            .tenants
            .consent_holders(&envelope.tenant, envelope.channel)
        {
            let found = store.opt_out(holder, envelope.to.as_str()).await?;
            if found.as_ref().is_some_and(|o| o.blocks(envelope.channel)) {
                return Ok(found);
            }
            own = own.or(Some(found));
        }
        Ok(own.flatten())
    }
}
