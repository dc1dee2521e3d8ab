//! What Infobip POSTs to `/webhooks/infobip` (delivery reports) and
//! `/webhooks/infobip/inbound` (inbound SMS): `results[]`, up to 2000 per
//! request (`docs/providers/infobip.md`, "Delivery reports"). Read
//! leniently, like Meta's: a result without an id or with a status Herald
//! does not map is skipped and counted, never a reason to refuse the batch.

use http::HeaderMap;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::error::group;
use crate::channels::WebhookContent;
use crate::channels::inbound::{InboundWebhook, Proof, Refusal, WebhookRoute};
use crate::channels::unreadable::UnreadableWebhook;
use crate::config::Secret;
use crate::events::signing;
use crate::status::{Entry, Inbound, Status, StatusError, Update};

/// Infobip's status id of `DELIVERED_TO_HANDSET`, the final delivered status.
const DELIVERED_TO_HANDSET: i64 = 5;

/// How both Infobip webhooks describe their signature.
const SIGNATURE_DESCRIPTION: &str =
    "Hex HMAC-SHA256 of the body with INFOBIP_WEBHOOK_SECRET (or HTTP Basic)";

/// `/webhooks/infobip`: delivery reports.
pub static REPORTS: WebhookRoute = WebhookRoute {
    path: "/webhooks/infobip",
    source: "infobip",
    operation_id: "receiveInfobipReports",
    description: "`POST /webhooks/infobip`: delivery reports, each merged into the status\nof the message whose id is its `messageId` (Herald's id, sent as\nInfobip's). Reports for ids Herald has not recorded are kept until the\nsend is recorded, like WhatsApp's.",
    signature_header: "X-Infobip-Signature",
    signature_description: SIGNATURE_DESCRIPTION,
    signature_required: false,
    handshake: None,
};

/// `/webhooks/infobip/inbound`: inbound SMS.
pub static INBOUND: WebhookRoute = WebhookRoute {
    path: "/webhooks/infobip/inbound",
    source: "infobip-inbound",
    operation_id: "receiveInfobipInbound",
    description: "`POST /webhooks/infobip/inbound`: inbound SMS, as `message.inbound`\nevents (channel `sms`), and opt-out keywords.",
    signature_header: "X-Infobip-Signature",
    signature_description: SIGNATURE_DESCRIPTION,
    signature_required: false,
    handshake: None,
};

/// One of Infobip's webhooks: authenticated by the hex HMAC-SHA256 in
/// `INFOBIP_SIGNATURE_HEADER` with `INFOBIP_WEBHOOK_SECRET`, or by HTTP Basic
/// with `INFOBIP_WEBHOOK_BASIC`, whichever is configured and sent.
#[derive(Debug)]
pub struct InfobipWebhook {
    route: &'static WebhookRoute,
    read: fn(&[u8]) -> Result<WebhookContent, UnreadableWebhook>,
    secret: Option<Secret>,
    basic: Option<Secret>,
    signature_header: String,
}

impl InfobipWebhook {
    /// The delivery-report webhook.
    pub fn reports(secret: Option<Secret>, basic: Option<Secret>, signature_header: &str) -> Self {
        Self {
            route: &REPORTS,
            read: read_reports,
            secret,
            basic,
            signature_header: signature_header.to_owned(),
        }
    }

    /// The inbound-SMS webhook.
    pub fn inbound(secret: Option<Secret>, basic: Option<Secret>, signature_header: &str) -> Self {
        Self {
            route: &INBOUND,
            read: read_inbound,
            ..Self::reports(secret, basic, signature_header)
        }
    }

    /// Checks HTTP Basic credentials against `INFOBIP_WEBHOOK_BASIC`.
    fn check_basic(
        basic: &Secret,
        authorization: &http::HeaderValue,
    ) -> Result<Proof<'static>, Refusal> {
        use base64::Engine;
        let sent = authorization
            .to_str()
            .ok()
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .unwrap_or_default();
        let matches: bool = sent.ct_eq(basic.expose().as_bytes()).into();
        if matches {
            Ok(Proof::Proven)
        } else {
            Err(Refusal::Invalid)
        }
    }

    /// What a request without credentials should have sent.
    fn expected(&self) -> String {
        match (&self.secret, &self.basic) {
            (Some(_), None) => self.signature_header.clone(),
            (None, _) => "Authorization (Basic)".into(),
            (Some(_), Some(_)) => format!("{} or Authorization (Basic)", self.signature_header),
        }
    }
}

impl InboundWebhook for InfobipWebhook {
    fn route(&self) -> &'static WebhookRoute {
        self.route
    }

    fn is_configured(&self) -> bool {
        self.secret.is_some() || self.basic.is_some()
    }

    fn check_headers<'a>(&self, headers: &'a HeaderMap) -> Result<Proof<'a>, Refusal> {
        if !self.is_configured() {
            return Err(Refusal::NotConfigured);
        }
        if self.secret.is_some()
            && let Some(signature) = headers.get(self.signature_header.as_str())
        {
            return signature
                .to_str()
                .map(Proof::Signature)
                .map_err(|_| Refusal::Invalid);
        }
        if let Some(basic) = &self.basic
            && let Some(authorization) = headers.get(http::header::AUTHORIZATION)
        {
            return Self::check_basic(basic, authorization);
        }
        Err(Refusal::Missing(self.expected()))
    }

    fn check_body(&self, proof: &Proof<'_>, body: &[u8]) -> Result<(), Refusal> {
        match (proof, &self.secret) {
            (Proof::Proven, _) => Ok(()),
            (Proof::Signature(signature), Some(secret))
                if signature_matches(secret.expose().as_bytes(), body, signature) =>
            {
                Ok(())
            }
            (Proof::Signature(_), _) => Err(Refusal::Invalid),
        }
    }

    fn read(&self, body: &[u8]) -> Result<WebhookContent, UnreadableWebhook> {
        (self.read)(body)
    }
}

/// True when `header` holds the hex HMAC-SHA256 of `body` keyed with
/// `secret` (a `sha256=` prefix accepted), compared in constant time.
pub fn signature_matches(secret: &[u8], body: &[u8], header: &str) -> bool {
    let header = header.trim();
    let hex = header.strip_prefix("sha256=").unwrap_or(header);
    signing::verify_hex(secret, body, hex)
}

fn results(body: &[u8]) -> Result<Vec<Value>, UnreadableWebhook> {
    let payload: Value = serde_json::from_slice(body)?;
    match payload {
        Value::Object(mut map) => match map.remove("results") {
            Some(Value::Array(results)) => Ok(results),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err(UnreadableWebhook::NotAnArray("results")),
        },
        _ => Err(UnreadableWebhook::NotAnObject),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Infobip's timestamps: `2026-01-01T10:00:05.456+0000` (RFC 3339 taken too).
pub fn timestamp_ms(value: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(value))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The Herald status for an Infobip status: `DELIVERED_TO_HANDSET` is
/// delivered; `DELIVERED_TO_OPERATOR` and the other intermediate `PENDING_*`
/// are sent; `UNDELIVERABLE`, `EXPIRED` and `REJECTED` are failed.
pub fn status_of(group_id: i64, id: i64) -> Option<Status> {
    match group_id {
        group::DELIVERED if id == DELIVERED_TO_HANDSET => Some(Status::Delivered),
        group::DELIVERED | group::PENDING => Some(Status::Sent),
        group::UNDELIVERABLE | group::EXPIRED | group::REJECTED => Some(Status::Failed),
        _ => None,
    }
}

/// Reads a delivery-report body. `Err` only when it is not a JSON object
/// (or its `results` not an array).
pub fn read_reports(body: &[u8]) -> Result<WebhookContent, UnreadableWebhook> {
    let mut content = WebhookContent::default();
    for result in results(body)? {
        match report(&result) {
            Some(update) => content.updates.push(update),
            None => content.skipped += 1,
        }
    }
    Ok(content)
}

fn report(result: &Value) -> Option<Update> {
    let message_id = text(result, "messageId")?;
    let status = result.get("status")?;
    let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_i64);
    let status_id = number(status, "id").unwrap_or_default();
    let name = text(status, "name").unwrap_or("UNKNOWN");
    let herald = status_of(number(status, "groupId")?, status_id)?;
    let error = (herald == Status::Failed).then(|| {
        // The report's error when it names one, else the status itself.
        match result
            .get("error")
            .filter(|e| number(e, "id").unwrap_or(0) != 0)
        {
            Some(e) => StatusError {
                code: number(e, "id").map(Into::into),
                title: text(e, "name").unwrap_or(name).to_owned(),
                channel: "sms".into(),
                class: None,
            },
            None => StatusError {
                code: Some(status_id.into()),
                title: name.to_owned(),
                channel: "sms".into(),
                class: None,
            },
        }
    });
    let at_ms = text(result, "doneAt")
        .or_else(|| text(result, "sentAt"))
        .and_then(timestamp_ms)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    Some(Update::Provider {
        provider_message_id: message_id.to_owned(),
        status: herald,
        entry: Entry {
            at_ms,
            channel: Some("sms".into()),
            attempt: None,
            provider_status: Some(name.to_owned()),
            error,
        },
    })
}

/// Reads an inbound-SMS body (Infobip's MO push) into inbound messages.
pub fn read_inbound(body: &[u8]) -> Result<WebhookContent, UnreadableWebhook> {
    let mut content = WebhookContent::default();
    for result in results(body)? {
        let (Some(id), Some(from)) = (text(&result, "messageId"), text(&result, "from")) else {
            content.skipped += 1;
            continue;
        };
        let from = if from.starts_with('+') {
            from.to_owned()
        } else {
            format!("+{from}")
        };
        content.inbound.push(Inbound {
            provider_message_id: id.to_owned(),
            channel: "sms".into(),
            from,
            to: text(&result, "to").map(str::to_owned),
            tenants: Vec::new(),
            contact_name: None,
            at_ms: text(&result, "receivedAt")
                .and_then(timestamp_ms)
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
            message: result,
        });
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dlr(group_id: i64, id: i64, name: &str, error: &Value) -> Value {
        json!({"bulkId": "b", "messageId": "m1", "to": "41793026727", "sender": "InfoSMS",
            "sentAt": "2026-01-01T10:00:01.123+0000", "doneAt": "2026-01-01T10:00:05.456+0000",
            "messageCount": 1, "callbackData": "order-42",
            "status": {"groupId": group_id, "groupName": "X", "id": id, "name": name, "description": ""},
            "error": error})
    }

    const NO_ERROR: fn() -> Value = || json!({"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": false});

    #[test]
    fn reports_map_to_statuses_with_infobip_s_time_and_error() {
        let body = json!({"results": [
            dlr(3, 5, "DELIVERED_TO_HANDSET", &NO_ERROR()),
            dlr(3, 2, "DELIVERED_TO_OPERATOR", &NO_ERROR()),
            dlr(1, 7, "PENDING_ENROUTE", &NO_ERROR()),
            dlr(2, 9, "UNDELIVERABLE_NOT_DELIVERED",
                &json!({"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER", "permanent": false})),
            dlr(4, 15, "EXPIRED_EXPIRED", &NO_ERROR()),
            dlr(5, 6, "REJECTED_NETWORK", &NO_ERROR()),
            dlr(9, 1, "SOMETHING_NEW", &NO_ERROR()),
            json!({"status": {"groupId": 3, "id": 5}}),
        ]});
        let content = read_reports(body.to_string().as_bytes()).unwrap();
        assert_eq!(content.skipped, 2);
        type Seen = (Status, Option<(Option<i64>, String)>);
        let statuses: Vec<Seen> = content
            .updates
            .iter()
            .map(|u| match u {
                Update::Provider { status, entry, .. } => {
                    assert_eq!(entry.at_ms, 1_767_261_605_456);
                    assert_eq!(entry.channel.as_deref(), Some("sms"));
                    (
                        *status,
                        entry
                            .error
                            .as_ref()
                            .map(|e| (e.code.as_ref().and_then(|c| c.as_i64()), e.title.clone())),
                    )
                }
                Update::Message { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(
            statuses,
            [
                (Status::Delivered, None),
                (Status::Sent, None),
                (Status::Sent, None),
                (
                    Status::Failed,
                    Some((Some(27), "EC_ABSENT_SUBSCRIBER".into()))
                ),
                (Status::Failed, Some((Some(15), "EXPIRED_EXPIRED".into()))),
                (Status::Failed, Some((Some(6), "REJECTED_NETWORK".into()))),
            ]
        );
    }

    #[test]
    fn inbound_sms_become_inbound_messages() {
        let body = json!({"results": [{"messageId": "mo-1", "from": "41793026727", "to": "447860099299",
            "text": "stop", "cleanText": "stop", "keyword": "STOP",
            "receivedAt": "2026-01-01T10:00:05.456+0000", "smsCount": 1}, {"text": "no id"}]});
        let content = read_inbound(body.to_string().as_bytes()).unwrap();
        assert_eq!(content.skipped, 1);
        let i = &content.inbound[0];
        assert_eq!(i.from, "+41793026727");
        assert_eq!(i.channel, "sms");
        assert_eq!(i.at_ms, 1_767_261_605_456);
        assert_eq!(i.text(), Some("stop"));
        // cleanText is the text without Infobip's keyword: never read.
        let mut keyword_only = i.clone();
        keyword_only.message["cleanText"] = json!("");
        assert_eq!(keyword_only.text(), Some("stop"));
    }

    #[test]
    fn signatures_are_hex_hmacs_with_or_without_a_prefix() {
        let body = br#"{"results":[]}"#;
        let hex = signing::to_hex(&signing::hmac_sha256(b"k", &[body]));
        assert!(signature_matches(b"k", body, &hex));
        assert!(signature_matches(b"k", body, &format!("sha256={hex}")));
        assert!(!signature_matches(b"other", body, &hex));
        assert!(!signature_matches(b"k", b"{}", &hex));
        assert!(matches!(
            read_reports(b"[]"),
            Err(UnreadableWebhook::NotAnObject)
        ));
        assert_eq!(
            read_reports(br#"{"results": 3}"#).unwrap_err().to_string(),
            "`results` is not an array"
        );
    }
}
