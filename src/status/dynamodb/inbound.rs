//! Inbound messages with SNS: their record and event, once, and their
//! media. A WhatsApp message a person sent with media has
//! its `message.inbound` event wait for the media. The webhook's write
//! publishes, once (once-only work marked `media_job` on the inbound item),
//! a media job envelope to the messages topic instead of the event; the
//! consumer keeps the media in `MEDIA_BUCKET` and then publishes the event
//! with `media`, once (marked `ev_inbound`, as an event without media is).
//! SQS redelivers a job that failed; past `DELIVERY_MAX_ATTEMPTS` the event
//! goes with `media.error`.

use serde_json::Value;

use super::{DynamoStatusStore, event_error, n, now_ms, s};
use crate::contract::{ENVELOPE_VERSION, Envelope, MEDIA_JOB_VERSION};
use crate::domain::PhoneNumber;
use crate::status::{Inbound, StoreError, events};

impl DynamoStatusStore {
    /// Records an inbound message and publishes its event once (once-only
    /// work marked `ev_inbound`; an item from before that marker carries
    /// `evented`, and its event was published).
    pub(super) async fn record_inbound(&self, inbound: &Inbound) -> Result<(), StoreError> {
        if let Some((number_id, person)) = inbound.window_key() {
            self.advance_window((number_id, person), "lastInboundAt", inbound.at_ms)
                .await?;
        }
        let pk = format!("inbound#{}", inbound.provider_message_id);
        let mut extra = vec![("seenAt", n(now_ms()), true)];
        if let Some((number_id, _)) = inbound.window_key() {
            let tenants = serde_json::to_string(&inbound.tenants).expect("strings serialise");
            extra.push(("numberId", s(number_id), true));
            extra.push(("tenants", s(tenants), true));
        }
        let item = self.add_entries(pk.clone(), &[], &extra).await?;
        let evented = item.contains_key("ev_inbound") || item.contains_key("evented");
        if !evented && self.queue_media_job(inbound).await? {
            return Ok(());
        }
        let Some(events) = &self.events else {
            return Ok(());
        };
        let done = item
            .get("ev_inbound")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            == Some("done");
        if done || item.contains_key("evented") {
            return Ok(());
        }
        let event = events::inbound_event(inbound);
        self.once(&s(pk), "ev_inbound", || async {
            events.publish(&event).await.map_err(event_error)
        })
        .await
    }

    /// Keeps the media of inbound messages before their events: jobs are
    /// published where failover legs go (the messages topic).
    pub fn with_media_jobs(mut self) -> Self {
        self.media_jobs = true;
        self
    }

    /// Publishes `inbound`'s media job once, instead of its event; `false`
    /// when it has no media or jobs are off (the event goes as usual).
    pub(super) async fn queue_media_job(&self, inbound: &Inbound) -> Result<bool, StoreError> {
        let (true, Some(publisher), Some(_)) =
            (self.media_jobs, &self.failover, inbound.media_id())
        else {
            return Ok(false);
        };
        let Some(envelope) = job_envelope(inbound) else {
            return Ok(false);
        };
        let pk = s(format!("inbound#{}", inbound.provider_message_id));
        self.once(&pk, "media_job", || async {
            publisher
                .publish(&envelope)
                .await
                .map(|_| ())
                .map_err(|e| StoreError::caused_by("cannot publish a media job", e))
        })
        .await?;
        Ok(true)
    }

    /// The end of a media job: the event with `media`, once.
    pub(super) async fn publish_with_media(
        &self,
        inbound: &Inbound,
        media: Value,
    ) -> Result<(), StoreError> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        let pk = s(format!("inbound#{}", inbound.provider_message_id));
        let event = events::inbound_event_with(inbound, Some(media));
        self.once(&pk, "ev_inbound", || async {
            events.publish(&event).await.map_err(event_error)
        })
        .await
    }
}

/// The job envelope of `inbound`: to the person, from the number that
/// received it (so the consumer downloads with that number's token).
fn job_envelope(inbound: &Inbound) -> Option<Envelope> {
    let from = inbound.from.trim_start_matches('+');
    let person = PhoneNumber::parse(format!("+{from}")).ok()?;
    let mut envelope = Envelope {
        version: ENVELOPE_VERSION,
        id: uuid::Uuid::now_v7(),
        channel: crate::contract::Channel::Whatsapp,
        to: person,
        message: Value::Null,
        reply_to: None,
        callback_data: None,
        metadata: serde_json::Map::new(),
        accepted_at: chrono::Utc::now(),
        api_key_id: String::new(),
        fallback: None,
        failover_from: None,
        pending_status: None,
        tenant: inbound
            .tenants
            .first()
            .cloned()
            .unwrap_or_else(|| crate::contract::DEFAULT_TENANT.to_owned()),
        from: inbound.to.clone(),
        priority: crate::contract::Priority::default(),
        expires_at: None,
        send_at: None,
        batch_id: None,
        inbound_media: Some(serde_json::to_value(inbound).ok()?),
    };
    envelope.version = MEDIA_JOB_VERSION;
    Some(envelope)
}
