//! A fake Meta webhook sender: builds status and inbound payloads as Meta
//! documents them, batches them into entries and changes, and signs them
//! with `X-Hub-Signature-256` the way Meta does (over the raw body, or over
//! its `\uXXXX`-escaped form).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const APP_SECRET: &str = "meta-app-secret-for-tests";
pub const VERIFY_TOKEN: &str = "verify-token-for-tests";
/// The sender of inbound messages, as Meta writes it (no `+`).
pub const CUSTOMER: &str = "16505551234";

/// The environment that turns the WhatsApp webhook on.
pub fn webhook_vars() -> [(&'static str, &'static str); 2] {
    [
        ("WHATSAPP_APP_SECRET", APP_SECRET),
        ("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN),
    ]
}

/// `sha256=<hex>` of `body` keyed with `secret`, computed here rather than by Herald.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Meta's escaped form: every non-ASCII character as `\uXXXX` (UTF-16, lower-case hex).
pub fn escaped(body: &str) -> String {
    let mut out = String::new();
    for c in body.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// One status object.
pub fn status(wamid: &str, name: &str, timestamp: i64) -> Value {
    json!({
        "id": wamid, "status": name, "timestamp": timestamp.to_string(),
        "recipient_id": "14155550123",
        "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"}
    })
}

/// A `failed` status with Meta's error object.
pub fn failed(wamid: &str, code: i64, title: &str, timestamp: i64) -> Value {
    json!({
        "id": wamid, "status": "failed", "timestamp": timestamp.to_string(),
        "recipient_id": "14155550123",
        "errors": [{"code": code, "title": title, "message": title,
                    "error_data": {"details": "Message failed to send because of an unknown error."},
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]
    })
}

/// One inbound message of `kind` with its payload object.
pub fn inbound(wamid: &str, kind: &str, payload: Value) -> Value {
    let mut message =
        json!({"from": CUSTOMER, "id": wamid, "timestamp": "1749416383", "type": kind});
    if !payload.is_null() {
        message[kind] = payload;
    }
    message
}

/// One inbound message of every type Meta's reference lists.
pub fn every_inbound_type() -> Vec<Value> {
    vec![
        inbound(
            "wamid.in.text",
            "text",
            json!({"body": "Does it come in another color? 👍 ç"}),
        ),
        inbound(
            "wamid.in.image",
            "image",
            json!({"id": "m1", "mime_type": "image/jpeg", "sha256": "x", "caption": "hi"}),
        ),
        inbound(
            "wamid.in.video",
            "video",
            json!({"id": "m2", "mime_type": "video/mp4", "sha256": "x"}),
        ),
        inbound(
            "wamid.in.audio",
            "audio",
            json!({"id": "m3", "mime_type": "audio/ogg", "sha256": "x", "voice": true}),
        ),
        inbound(
            "wamid.in.document",
            "document",
            json!({"id": "m4", "mime_type": "application/pdf", "sha256": "x", "filename": "a.pdf"}),
        ),
        inbound(
            "wamid.in.sticker",
            "sticker",
            json!({"id": "m5", "mime_type": "image/webp", "sha256": "x", "animated": false}),
        ),
        inbound(
            "wamid.in.location",
            "location",
            json!({"latitude": 37.48, "longitude": -122.14, "name": "HQ"}),
        ),
        inbound(
            "wamid.in.contacts",
            "contacts",
            json!([{"name": {"formatted_name": "Ana"}, "phones": [{"phone": "+1 555 0100"}]}]),
        ),
        inbound(
            "wamid.in.reaction",
            "reaction",
            json!({"message_id": "wamid.out", "emoji": "❤️"}),
        ),
        json!({"from": CUSTOMER, "id": "wamid.in.button", "timestamp": "1749416383", "type": "button",
               "button": {"payload": "yes", "text": "Yes"}, "context": {"from": "15550783881", "id": "wamid.out"}}),
        inbound(
            "wamid.in.button_reply",
            "interactive",
            json!({"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}}),
        ),
        inbound(
            "wamid.in.list_reply",
            "interactive",
            json!({"type": "list_reply", "list_reply": {"id": "r1", "title": "Row", "description": "d"}}),
        ),
        inbound(
            "wamid.in.order",
            "order",
            json!({"catalog_id": "c", "text": "t", "product_items": [{"product_retailer_id": "p", "quantity": 1, "item_price": 9.99, "currency": "USD"}]}),
        ),
        inbound(
            "wamid.in.system",
            "system",
            json!({"body": "changed", "wa_id": "16505550000", "type": "user_changed_number"}),
        ),
        json!({"from": CUSTOMER, "id": "wamid.in.unsupported", "timestamp": "1749416383", "type": "unsupported",
               "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                           "error_data": {"details": "Message type is currently not supported."}}]}),
    ]
}

/// A webhook body: one entry with one `messages` change holding `statuses`
/// and `messages`, plus a change of another kind (ignored by Herald).
pub fn payload(statuses: Vec<Value>, messages: Vec<Value>) -> Value {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
    });
    if !statuses.is_empty() {
        value["statuses"] = Value::Array(statuses);
    }
    if !messages.is_empty() {
        value["contacts"] = json!([{"profile": {"name": "Sheena Nelson"}, "wa_id": CUSTOMER}]);
        value["messages"] = Value::Array(messages);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA_ID", "changes": [
        {"field": "messages", "value": value},
        {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT", "unknown": true}}
    ]}]})
}

/// Several payloads as one delivery: their entries in one `entry[]`.
pub fn batched(payloads: Vec<Value>) -> Value {
    let entries: Vec<Value> = payloads
        .into_iter()
        .flat_map(|p| p["entry"].as_array().cloned().unwrap_or_default())
        .collect();
    json!({"object": "whatsapp_business_account", "entry": entries})
}

/// Posts signed bodies to a gateway's `/webhooks/whatsapp`.
pub struct MetaSender {
    pub client: reqwest::Client,
    pub url: String,
}

impl MetaSender {
    pub fn new(gateway: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: format!("{gateway}/webhooks/whatsapp"),
        }
    }

    /// Posts `body` as given, signed over those bytes with `secret`.
    pub async fn post_raw(&self, body: &[u8], signature: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            request = request.header("x-hub-signature-256", s);
        }
        request.send().await.expect("gateway answers")
    }

    /// Posts `payload` signed like Meta; returns the status code.
    pub async fn post(&self, payload: &Value) -> u16 {
        let body = payload.to_string();
        self.post_raw(
            body.as_bytes(),
            Some(&signature(APP_SECRET, body.as_bytes())),
        )
        .await
        .status()
        .as_u16()
    }

    /// Posts each status alone, shuffled by `seed`, each twice (Meta retries),
    /// and asserts every one is acknowledged.
    pub async fn post_shuffled_twice(&self, statuses: &[Value], seed: u64) {
        let mut order: Vec<&Value> = statuses.iter().chain(statuses.iter()).collect();
        let mut rng = fastrand::Rng::with_seed(seed);
        rng.shuffle(&mut order);
        for s in order {
            assert_eq!(
                self.post(&payload(vec![s.clone()], vec![])).await,
                200,
                "{s}"
            );
        }
    }
}
