//! The envelope: the versioned JSON that travels from the gateway to the consumer
//! over SNS, SQS or the embedded queue. Both binaries use this one definition.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::{OutboundMessage, PhoneNumber};

/// The only envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// The delivery channel an envelope is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ChannelName)]
pub enum Channel {
    /// The WhatsApp Cloud API.
    Whatsapp,
    /// SMS through Infobip.
    Sms,
}

impl Channel {
    /// Every channel (in the order error messages list them).
    pub const ALL: [Channel; 2] = [Channel::Sms, Channel::Whatsapp];

    /// The channel called `name` on the wire.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// What an opt-out made by an inbound message on this channel is noted as
    /// (`inbound-sms`, `inbound-whatsapp`).
    pub fn inbound_source(self) -> &'static str {
        match self {
            Self::Whatsapp => "inbound-whatsapp",
            Self::Sms => "inbound-sms",
        }
    }

    /// The name used on the wire and as the `channel` SNS message attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whatsapp => "whatsapp",
            Self::Sms => "sms",
        }
    }
}

/// True for a FIFO topic or queue, named by ARN or URL: AWS marks them with a
/// `.fifo` suffix. The one place Herald decides it.
pub fn is_fifo(arn_or_url: &str) -> bool {
    arn_or_url.ends_with(".fifo")
}

/// One accepted message, as published: the versioned contract between the
/// gateway and the consumer (the README's "The envelope" shows it).
///
/// Unknown fields are ignored when reading: a field added to version 1 must be
/// optional, so a gateway can be deployed before its consumers. A change that
/// old consumers must not read is a new version, which they refuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Always [`ENVELOPE_VERSION`] when written by this build.
    pub version: u32,
    /// The message id returned to the client (UUID v7, so ids sort by time).
    pub id: Uuid,
    /// Where the message goes.
    pub channel: Channel,
    /// The recipient, E.164.
    pub to: PhoneNumber,
    /// The message object: WhatsApp's without `messaging_product` and `to`,
    /// or an SMS's `{"type": "text", "text": {"body"}, "sender"?}`.
    pub message: Value,
    /// WhatsApp message id to quote.
    pub reply_to: Option<String>,
    /// Opaque data echoed back in status events.
    pub callback_data: Option<String>,
    /// The client's data, untouched.
    pub metadata: Map<String, Value>,
    /// When the gateway accepted the message.
    #[serde(with = "millis")]
    pub accepted_at: DateTime<Utc>,
    /// Which API key sent it (the key's id, never the key).
    pub api_key_id: String,
    /// The SMS to send when WhatsApp cannot reach the person (a WhatsApp
    /// message's `fallback`). Optional in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackLeg>,
    /// Set on the envelope of a failover leg: the channel that failed first.
    /// Statuses of this leg are recorded after that channel's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_from: Option<Channel>,
    /// Set when this envelope carries a status to record, not a message to
    /// send (version [`PENDING_STATUS_VERSION`]; see [`PendingStatus`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_status: Option<PendingStatus>,
    /// The tenant the message belongs to (`default` without `TENANTS_FILE`).
    /// Optional in version 1.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The sender: a WhatsApp `phone_number_id` or an SMS sender, resolved
    /// by the gateway (absent: the provider's default). Optional in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Its order among the tenant's messages due at once. Optional in
    /// version 1 (`normal`).
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// When the message stops being worth sending (`expiresAt` or
    /// `validitySeconds`): not handed to a provider after it. Optional in
    /// version 1 (a consumer that does not know it sends without checking).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it is due, when that is after its acceptance: its `sendAt`,
    /// moved out of its quiet hours. The embedded queue holds it until then;
    /// with SNS it is published then. Optional in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis_opt")]
    pub send_at: Option<DateTime<Utc>>,
    /// The batch it was sent in (the batch answer's `batchId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// Set when this envelope is a job, not a message: keep the media of
    /// this inbound message (JSON of `status::Inbound`) and then publish its
    /// event (version [`MEDIA_JOB_VERSION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_media: Option<Value>,
}

/// The version of an envelope that carries an inbound media job: consumers
/// that do not know it refuse it (to the dead-letter queue) rather than
/// take it for a message.
pub const MEDIA_JOB_VERSION: u32 = 3;

/// The one tenant of a deployment without `TENANTS_FILE`, and of envelopes
/// written before tenants.
pub const DEFAULT_TENANT: &str = "default";

fn default_tenant() -> String {
    DEFAULT_TENANT.to_owned()
}

/// A message's order among its tenant's messages due at the same time:
/// `high` first, `bulk` last. Single sends are `normal`, batch entries `bulk`,
/// unless they say otherwise.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Before everything else of the tenant (one-time passwords).
    High,
    /// The default of a single send.
    #[default]
    Normal,
    /// The default of a batch entry (campaigns).
    Bulk,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Self; 3] = [Self::High, Self::Normal, Self::Bulk];

    /// The name clients send.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Bulk => "bulk",
        }
    }

    /// The priority named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Its rank in the embedded queue's index: 0 first.
    pub fn rank(self) -> i64 {
        self as i64
    }

    fn is_normal(&self) -> bool {
        *self == Self::Normal
    }
}

/// The version of an envelope that carries a [`PendingStatus`]: consumers
/// that do not know the field refuse it (to the dead-letter queue) instead of
/// sending the message a second time.
pub const PENDING_STATUS_VERSION: u32 = 2;

/// A status the consumer could not record after the provider answered (the
/// status store was unavailable past its retries). The envelope travels again
/// through the topic with it, and the consumer that receives it records the
/// status (with its event) instead of sending: the message is sent once, its
/// status and event are not lost. Kept as JSON here so the envelope does not
/// depend on the status model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingStatus {
    /// The status reached (`submitted`, `failed`).
    pub status: String,
    /// Its history entry.
    pub entry: Value,
    /// The provider's id for the message, once submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

/// The fallback a WhatsApp envelope carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FallbackLeg {
    /// The fallback's channel.
    pub channel: Channel,
    /// Its message object, shaped as that channel's envelope `message`.
    pub message: Value,
    /// The message's expiry, kept with the leg: a status record keeps the
    /// leg, so a failover a provider's report starts still honours it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis_opt")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a payload could not be read as an envelope. Such a payload is never sent:
/// it goes to the dead-letter path.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or not an envelope of a version we know the shape of.
    #[error("payload is not a valid envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    /// A version this build does not understand (written by a newer gateway?).
    #[error("envelope version {0} is not supported (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u64),
}

impl Envelope {
    /// Wraps a validated message for publishing.
    pub fn new(id: Uuid, message: OutboundMessage, api_key_id: &str) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            id,
            channel: message.channel,
            to: message.to,
            message: message.content,
            reply_to: message.reply_to,
            callback_data: message.callback_data,
            metadata: message.metadata,
            accepted_at: Utc::now(),
            api_key_id: api_key_id.to_owned(),
            fallback: message.fallback.map(|f| FallbackLeg {
                channel: f.channel,
                message: f.content,
                expires_at: message
                    .expires_at_ms
                    .and_then(DateTime::from_timestamp_millis),
            }),
            failover_from: None,
            pending_status: None,
            tenant: default_tenant(),
            from: message.from.map(|s| s.value),
            priority: message.priority.unwrap_or_default(),
            expires_at: message
                .expires_at_ms
                .and_then(DateTime::from_timestamp_millis),
            send_at: message.send_at_ms.and_then(DateTime::from_timestamp_millis),
            batch_id: None,
            inbound_media: None,
        }
    }

    /// The same envelope, belonging to `tenant`.
    #[must_use]
    pub fn for_tenant(mut self, tenant: &str) -> Self {
        tenant.clone_into(&mut self.tenant);
        self
    }

    /// The channel the message was sent on first: the one its record is
    /// filed under (for a failover leg, the channel that failed).
    pub fn first_channel(&self) -> Channel {
        self.failover_from.unwrap_or(self.channel)
    }

    /// The envelope's id in a queue (the embedded queue's row, a FIFO topic's
    /// `MessageDeduplicationId`): the message id, with the leg's channel
    /// appended for a failover leg, which must not be taken for a copy of the
    /// first.
    pub fn queue_id(&self) -> String {
        let leg = match self.failover_from {
            None => self.id.to_string(),
            Some(_) => format!("{}.{}", self.id, self.channel.as_str()),
        };
        match &self.pending_status {
            None => leg,
            Some(pending) => format!("{leg}.status-{}", pending.status),
        }
    }

    /// This envelope carrying `pending` to be recorded instead of sent.
    #[must_use]
    pub fn with_pending_status(&self, pending: PendingStatus) -> Self {
        Self {
            version: PENDING_STATUS_VERSION,
            pending_status: Some(pending),
            ..self.clone()
        }
    }

    /// The envelope of this message's failover leg: the same id, recipient
    /// and sender's data, on the fallback's channel. `None` without a fallback.
    pub fn failover(&self) -> Option<Self> {
        let fallback = self.fallback.as_ref()?;
        Some(Self {
            channel: fallback.channel,
            message: fallback.message.clone(),
            reply_to: None,
            fallback: None,
            failover_from: Some(self.channel),
            from: fallback
                .message
                .get("sender")
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..self.clone()
        })
    }

    /// The segments of the SMS this envelope may send: its own text on
    /// SMS, or its SMS fallback's; 0 without one.
    pub fn sms_segments(&self) -> i64 {
        let text = if self.channel == Channel::Sms {
            Some(&self.message)
        } else {
            self.fallback
                .as_ref()
                .filter(|f| f.channel == Channel::Sms)
                .map(|f| &f.message)
        };
        text.and_then(|m| m.pointer("/text/body"))
            .and_then(Value::as_str)
            .map_or(0, |t| crate::domain::sms::analyze(t).segments as i64)
    }

    /// The WhatsApp message type, read from the message object.
    pub fn message_type(&self) -> &str {
        self.message
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
    }

    /// Serialises the envelope to its wire form.
    pub fn to_json(&self) -> String {
        // Sized for a typical envelope (about 400 bytes), so that writing it
        // does not grow the buffer step by step: this runs for every send.
        let mut json = Vec::with_capacity(512);
        serde_json::to_writer(&mut json, self)
            .expect("an envelope always serialises: its maps have string keys");
        String::from_utf8(json).expect("serde_json writes UTF-8")
    }

    /// Reads an envelope, checking the version before the shape so that a newer
    /// envelope is reported as such rather than as malformed.
    pub fn from_json(payload: &str) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u64,
        }
        let probe: VersionOnly = serde_json::from_str(payload).map_err(EnvelopeError::Malformed)?;
        let known = [ENVELOPE_VERSION, PENDING_STATUS_VERSION, MEDIA_JOB_VERSION].map(u64::from);
        if !known.contains(&probe.version) {
            return Err(EnvelopeError::UnsupportedVersion(probe.version));
        }
        let envelope: Self = serde_json::from_str(payload).map_err(EnvelopeError::Malformed)?;
        // Version 2 is only ever a status to record.
        if (envelope.version == PENDING_STATUS_VERSION) != envelope.pending_status.is_some()
            || (envelope.version == MEDIA_JOB_VERSION) != envelope.inbound_media.is_some()
        {
            return Err(EnvelopeError::UnsupportedVersion(probe.version));
        }
        Ok(envelope)
    }
}

/// `acceptedAt` as RFC 3339 with milliseconds and `Z`: `2026-11-23T12:00:00.123Z`.
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod millis_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` hands an `&Option`
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::millis::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(&text)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Envelope {
        let msg =
            OutboundMessage::try_from(json!({"to": "+14155550123", "message": "Hello"})).unwrap();
        Envelope::new(Uuid::now_v7(), msg, "ops")
    }

    #[test]
    fn the_wire_shape_matches_the_design() {
        let env = sample();
        let v: Value = serde_json::from_str(&env.to_json()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["channel"], "whatsapp");
        assert_eq!(v["to"], "+14155550123");
        assert_eq!(
            v["message"],
            json!({"type": "text", "text": {"body": "Hello", "preview_url": false}})
        );
        assert_eq!(v["replyTo"], Value::Null);
        assert_eq!(v["callbackData"], Value::Null);
        assert_eq!(v["metadata"], json!({}));
        assert_eq!(v["apiKeyId"], "ops");
        let at = v["acceptedAt"].as_str().unwrap();
        assert!(
            at.ends_with('Z') && at.len() == "2026-11-23T12:00:00.123Z".len(),
            "{at}"
        );
    }

    #[test]
    fn an_envelope_round_trips() {
        let env = sample();
        let back = Envelope::from_json(&env.to_json()).unwrap();
        assert_eq!(back.id, env.id);
        assert_eq!(back.message, env.message);
        assert_eq!(
            back.accepted_at.timestamp_millis(),
            env.accepted_at.timestamp_millis()
        );
    }

    #[test]
    fn unknown_versions_are_refused_by_name() {
        let mut v: Value = serde_json::from_str(&sample().to_json()).unwrap();
        v["version"] = json!(2);
        let err = Envelope::from_json(&v.to_string()).unwrap_err();
        assert!(matches!(err, EnvelopeError::UnsupportedVersion(2)), "{err}");
    }

    /// A status that travels again is version 2, with its own queue id; a
    /// version 2 without one, or a version 1 with one, is refused.
    #[test]
    fn a_pending_status_is_version_2_and_nothing_else_is() {
        let pending = PendingStatus {
            status: "submitted".into(),
            entry: json!({"atMs": 1}),
            provider_message_id: Some("wamid.X".into()),
        };
        let e = sample().with_pending_status(pending);
        assert_eq!(e.version, PENDING_STATUS_VERSION);
        assert_eq!(e.queue_id(), format!("{}.status-submitted", e.id));
        let read = Envelope::from_json(&e.to_json()).unwrap();
        assert_eq!(read.pending_status, e.pending_status);
        assert_eq!(read.version, PENDING_STATUS_VERSION);
        let mut wire: Value = serde_json::from_str(&e.to_json()).unwrap();
        wire["version"] = json!(1);
        assert!(Envelope::from_json(&wire.to_string()).is_err());
        let mut plain: Value = serde_json::from_str(&sample().to_json()).unwrap();
        plain["version"] = json!(2);
        assert!(Envelope::from_json(&plain.to_string()).is_err());
    }

    #[test]
    fn an_added_optional_field_is_tolerated() {
        let mut v: Value = serde_json::from_str(&sample().to_json()).unwrap();
        v["priority"] = json!("high");
        assert!(Envelope::from_json(&v.to_string()).is_ok());
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"version":1}"#,
            r#"{"version":"1"}"#,
        ] {
            assert!(
                matches!(Envelope::from_json(bad), Err(EnvelopeError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_invalid_recipient_is_malformed() {
        let mut v: Value = serde_json::from_str(&sample().to_json()).unwrap();
        v["to"] = json!("12345");
        assert!(matches!(
            Envelope::from_json(&v.to_string()),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
