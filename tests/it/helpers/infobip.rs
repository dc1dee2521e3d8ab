//! A fake Infobip (wiremock on loopback) answering `POST /sms/3/messages`
//! with the documented shapes, and a sender of signed delivery reports and
//! inbound SMS as Infobip posts them.

use std::time::Duration;

use herald::config::{InfobipConfig, Secret};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use super::event_receiver::{self, EventReceiver};
use super::whatsapp::FakeWhatsApp;
use super::{TestApp, meta, pairs};

pub const API_KEY: &str = "infobip-api-key-for-tests";
pub const WEBHOOK_SECRET: &str = "infobip-webhook-secret-for-tests";
pub const SENDER: &str = "Herald";

/// The fake API.
pub struct FakeInfobip {
    pub server: MockServer,
}

impl FakeInfobip {
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// A fake that accepts every correct send (`PENDING_ACCEPTED`).
    pub async fn accepting() -> Self {
        let fake = Self::start().await;
        send_endpoint()
            .respond_with(pending_accepted())
            .mount(&fake.server)
            .await;
        fake
    }

    /// The environment that points Herald at this fake, with its webhooks
    /// signed with [`WEBHOOK_SECRET`] and reports coming back to `public`.
    pub fn vars(&self, public: &str) -> Vec<(&'static str, String)> {
        vec![
            ("INFOBIP_BASE_URL", self.server.uri()),
            ("INFOBIP_API_KEY", API_KEY.to_owned()),
            ("INFOBIP_SENDER", SENDER.to_owned()),
            ("INFOBIP_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("PUBLIC_BASE_URL", public.to_owned()),
        ]
    }

    /// The client settings pointing at this fake, reports coming back to `public`.
    pub fn config(&self, public: &str) -> InfobipConfig {
        InfobipConfig {
            base_url: self.server.uri(),
            api_key: Secret::new(API_KEY),
            sender: Some(SENDER.into()),
            request_timeout: Duration::from_secs(5),
            max_mps: 50,
            public_base_url: Some(public.into()),
        }
    }

    /// Answers sends of the text `body` with `respond` (the first `times`
    /// only, ahead of other answers, when given).
    pub async fn answer_text(
        &self,
        body: &str,
        respond: impl wiremock::Respond + 'static,
        times: Option<u64>,
    ) {
        let mut mock = send_endpoint()
            .and(body_partial_json(
                json!({"messages": [{"content": {"text": body}}]}),
            ))
            .respond_with(respond);
        if let Some(n) = times {
            mock = mock.up_to_n_times(n).with_priority(1);
        }
        mock.mount(&self.server).await;
    }

    /// Waits (up to 10 s) until the fake has received `n` send requests; returns them all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<Value> {
        super::eventually(
            &format!("{n} requests to Infobip"),
            Duration::from_secs(10),
            async || Some(self.bodies().await).filter(|b| b.len() >= n),
        )
        .await
    }

    /// Every send request received, in order.
    pub async fn bodies(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/sms/3/messages")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

/// Public base URL of the gateways [`gateway`] starts (reports come back there).
pub const PUBLIC: &str = "https://gw.example.com";

/// An embedded gateway in `data` with Infobip at `fake` (and WhatsApp at
/// `whatsapp` when given), every webhook on, events to `events` when given,
/// and retries and the circuit's cool-down short enough for tests.
pub async fn gateway(
    data: &tempfile::TempDir,
    fake: &FakeInfobip,
    whatsapp: Option<&FakeWhatsApp>,
    events: Option<&EventReceiver>,
) -> TestApp {
    let mut vars: Vec<(&str, String)> = vec![
        ("DELIVERY_RETRY_BASE_MS", "20".into()),
        ("DELIVERY_RETRY_MAX_MS", "100".into()),
        ("CIRCUIT_COOLDOWN_MS", "100".into()),
    ];
    vars.extend(fake.vars(PUBLIC));
    if let Some(w) = whatsapp {
        vars.extend(w.vars());
        vars.extend(meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
    }
    if let Some(receiver) = events {
        vars.push(("EVENTS_WEBHOOK_URL", receiver.url.clone()));
        vars.push(("EVENTS_WEBHOOK_SECRET", event_receiver::SECRET.to_owned()));
    }
    TestApp::spawn_embedded(data.path(), &pairs(&vars)).await
}

/// Matches a correct send: method, path and `App` authorization.
pub fn send_endpoint() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path("/sms/3/messages"))
        .and(header("authorization", format!("App {API_KEY}").as_str()))
        .and(header("content-type", "application/json"))
}

/// A responder that echoes each request's message id with `status`.
pub struct Echo(pub Value);

impl wiremock::Respond for Echo {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let destination = &body["messages"][0]["destinations"][0];
        ResponseTemplate::new(200).set_body_json(json!({"bulkId": "bulk-1", "messages": [{
            "messageId": destination["messageId"], "destination": destination["to"],
            "status": self.0}]}))
    }
}

/// `PENDING_ACCEPTED`, the usual first status.
pub fn pending_accepted() -> Echo {
    Echo(
        json!({"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED",
        "description": "Message sent to next instance"}),
    )
}

/// A rejection in the response, e.g. `REJECTED_NETWORK` (id 6) or
/// `REJECTED_NOT_ENOUGH_CREDITS` (id 12).
pub fn rejected(id: i64, name: &str) -> Echo {
    Echo(
        json!({"groupId": 5, "groupName": "REJECTED", "id": id, "name": name,
        "description": "rejected"}),
    )
}

/// An HTTP error with Infobip's v3 error body.
pub fn api_error(status: u16, code: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"errorCode": code,
        "description": description, "action": "", "violations": [], "resources": []}))
}

/// Throttling: HTTP 429 `E429`.
pub fn throttled() -> ResponseTemplate {
    api_error(429, "E429", "Too many requests sent.").insert_header("retry-after", "1")
}

/// One delivery report for Herald's `message_id`.
pub fn report(message_id: &str, group_id: i64, id: i64, name: &str, done_at: &str) -> Value {
    json!({"bulkId": "bulk-1", "messageId": message_id, "to": "41793026727", "sender": SENDER,
        "sentAt": "2026-01-01T10:00:01.123+0000", "doneAt": done_at, "messageCount": 1,
        "mccMnc": "22801", "callbackData": "order-42",
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": {"groupId": group_id, "groupName": "X", "id": id, "name": name, "description": ""},
        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR",
            "description": "No Error", "permanent": false}})
}

pub fn delivered(message_id: &str) -> Value {
    report(
        message_id,
        3,
        5,
        "DELIVERED_TO_HANDSET",
        "2026-01-01T10:00:05.456+0000",
    )
}

pub fn on_operator(message_id: &str) -> Value {
    report(
        message_id,
        3,
        2,
        "DELIVERED_TO_OPERATOR",
        "2026-01-01T10:00:03.000+0000",
    )
}

/// One inbound SMS as Infobip's MO push carries it, the text being a keyword
/// set up on the number (so `cleanText`, the text without it, is empty).
pub fn inbound(message_id: &str, from: &str, text: &str) -> Value {
    json!({"messageId": message_id, "from": from, "to": "447860099299", "text": text,
        "cleanText": "", "keyword": text.trim().to_uppercase(), "receivedAt": "2026-01-01T10:00:05.456+0000",
        "smsCount": 1, "price": {"pricePerMessage": 0, "currency": "EUR"}})
}

/// Hex HMAC-SHA256 of `body` with the webhook secret, computed here.
pub fn signature(body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Posts Infobip webhooks to a gateway, signed.
pub struct InfobipSender {
    client: reqwest::Client,
    base: String,
}

impl InfobipSender {
    pub fn new(gateway: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: gateway.to_owned(),
        }
    }

    /// POSTs `results` to `route` (`/webhooks/infobip` or `.../inbound`),
    /// signed unless `signature` overrides it; returns the status.
    pub async fn post_to(&self, route: &str, results: Vec<Value>, signature: Option<&str>) -> u16 {
        let body = json!({"results": results}).to_string();
        let sig = signature.map_or_else(|| self::signature(body.as_bytes()), str::to_owned);
        self.client
            .post(format!("{}{route}", self.base))
            .header("content-type", "application/json")
            .header("x-infobip-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn reports(&self, results: Vec<Value>) -> u16 {
        self.post_to("/webhooks/infobip", results, None).await
    }

    pub async fn inbound(&self, results: Vec<Value>) -> u16 {
        self.post_to("/webhooks/infobip/inbound", results, None)
            .await
    }
}

/// An Infobip fake that accepts every send, and a WhatsApp fake that cannot
/// reach anyone (131026): the setting in which messages fail over to SMS.
pub async fn whatsapp_unreachable() -> (FakeInfobip, FakeWhatsApp) {
    let infobip = FakeInfobip::accepting().await;
    let whatsapp = FakeWhatsApp::start().await;
    super::whatsapp::send_endpoint()
        .respond_with(super::whatsapp::undeliverable())
        .mount(&whatsapp.server)
        .await;
    (infobip, whatsapp)
}

/// Once message `id`'s SMS is submitted, posts Infobip's delivered report
/// for it and returns the message's view once it is delivered.
pub async fn report_sms_delivered(app: &TestApp, id: &str) -> Value {
    app.wait_for_status(id, "submitted").await;
    let sender = InfobipSender::new(&app.address);
    assert_eq!(sender.reports(vec![delivered(id)]).await, 200);
    app.wait_for_status(id, "delivered").await
}
