//! A fake WhatsApp Graph API on loopback (wiremock): it checks method, path,
//! bearer token and body, and answers with the payloads Meta documents.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use herald::channels::Channels;
use herald::channels::whatsapp::WhatsAppClient;
use herald::config::{DeliveryConfig, DeliveryMode, Secret, WhatsAppConfig};
use herald::delivery::{Pipeline, PipelineLimits, RetryPolicy};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub const TOKEN: &str = "EAAG-test-token-not-a-real-one";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const VERSION: &str = "v25.0";

/// The fake Graph API for one test.
pub struct FakeWhatsApp {
    pub server: MockServer,
}

impl FakeWhatsApp {
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// The Cloud API settings pointing at this fake.
    pub fn config(&self, timeout: Duration) -> WhatsAppConfig {
        WhatsAppConfig {
            base_url: self.server.uri(),
            request_timeout: timeout,
            ..Self::config_for_tests()
        }
    }

    /// The test number's settings, pointing nowhere yet (set `base_url`).
    pub fn config_for_tests() -> WhatsAppConfig {
        WhatsAppConfig {
            access_token: Secret::new(TOKEN),
            phone_number_id: PHONE_NUMBER_ID.into(),
            api_version: VERSION.into(),
            base_url: String::new(),
            request_timeout: Duration::from_secs(5),
            max_mps: 1000,
            // Tests send many messages to one number; the pair rate has its own test.
            pair_rate: 0,
        }
    }

    /// The environment that points Herald at this fake: token, phone number
    /// id, API version, base URL, and no pair rate (as in [`Self::config`]).
    /// The webhook's app secret is [`super::meta::webhook_vars`].
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WHATSAPP_ACCESS_TOKEN", TOKEN.to_owned()),
            ("WHATSAPP_PHONE_NUMBER_ID", PHONE_NUMBER_ID.to_owned()),
            ("WHATSAPP_API_VERSION", VERSION.to_owned()),
            ("WHATSAPP_API_BASE_URL", self.server.uri()),
            ("WHATSAPP_PAIR_RATE", "0".to_owned()),
        ]
    }

    /// Delivery settings pointing at this fake.
    pub fn delivery_config(&self) -> DeliveryConfig {
        DeliveryConfig {
            mode: DeliveryMode::Providers {
                whatsapp: vec![self.config(Duration::from_secs(5))],
                infobip: None,
            },
            console_by_default: false,
            max_attempts: 4,
            concurrency: Some(8),
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(50),
            circuit_cooldown: Duration::from_secs(30),
            window_checks: true,
        }
    }

    /// A pipeline to this fake with retry delays short enough for tests.
    pub fn pipeline(&self, timeout: Duration) -> Pipeline {
        pipeline_for(&self.config(timeout), 4)
    }

    /// The same, giving up after `max_attempts`.
    pub fn pipeline_with_attempts(&self, timeout: Duration, max_attempts: u32) -> Pipeline {
        pipeline_for(&self.config(timeout), max_attempts)
    }

    /// Every request body the fake received (its POSTs but media uploads),
    /// in order.
    pub async fn bodies(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.method == wiremock::http::Method::POST)
            .filter(|r| !r.url.path().ends_with("/media"))
            .map(|r| serde_json::from_slice(&r.body).expect("the consumer sends JSON"))
            .collect()
    }

    /// Serves `pages` of templates for `waba_id` as Graph does:
    /// `GET /{version}/{waba-id}/message_templates`, each page but the last
    /// with `paging.next` (a full URL with an `after` cursor), for the test
    /// token only.
    pub async fn serve_templates(&self, waba_id: &str, pages: &[Vec<Value>]) {
        self.serve_templates_for(waba_id, TOKEN, pages).await;
    }

    /// [`Self::serve_templates`] for the holder of `token` only.
    pub async fn serve_templates_for(&self, waba_id: &str, token: &str, pages: &[Vec<Value>]) {
        let route = format!("/{VERSION}/{waba_id}/message_templates");
        for (i, page) in pages.iter().enumerate() {
            let mut body = json!({"data": page, "paging": {"cursors": {"before": "b", "after": format!("c{}", i + 1)}}});
            if i + 1 < pages.len() {
                body["paging"]["next"] = json!(format!(
                    "{}{route}?fields=name,language,status,category,components,parameter_format&limit=100&after=c{}",
                    self.server.uri(),
                    i + 1
                ));
            }
            let mock = Mock::given(method("GET"))
                .and(path(route.as_str()))
                .and(header("authorization", format!("Bearer {token}").as_str()));
            let (mock, priority) = if i == 0 {
                (
                    mock.and(wiremock::matchers::query_param(
                        "fields",
                        "name,language,status,category,components,parameter_format",
                    )),
                    10,
                )
            } else {
                let after = format!("c{i}");
                (
                    mock.and(wiremock::matchers::query_param("after", after.as_str())),
                    1,
                )
            };
            mock.respond_with(ResponseTemplate::new(200).set_body_json(body))
                .with_priority(priority)
                .mount(&self.server)
                .await;
        }
    }

    /// How many template pages the fake served.
    pub async fn template_requests(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r.method == wiremock::http::Method::GET
                    && r.url.path().ends_with("/message_templates")
            })
            .count()
    }
}

/// A pipeline through `config` with short retries, giving up after `max_attempts`.
pub fn pipeline_for(config: &WhatsAppConfig, max_attempts: u32) -> Pipeline {
    let client = WhatsAppClient::new(config).expect("client builds");
    Pipeline::new(
        Channels::whatsapp(client),
        fast_retries(),
        PipelineLimits {
            max_attempts,
            ..PipelineLimits::default()
        },
    )
}

/// Retry delays in milliseconds rather than seconds.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
        configuration: Duration::from_millis(50),
        throttled_floor: Duration::from_millis(20),
        unconfirmed_floor: Duration::from_millis(30),
    }
}

/// A mock of `POST /{version}/{phone-number-id}/messages` that requires the bearer token.
pub fn send_endpoint() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/{VERSION}/{PHONE_NUMBER_ID}/messages")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
}

/// A mock of `POST /{version}/{phone-number-id}/media` (a multipart
/// upload) that requires the bearer token.
pub fn media_endpoint() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(format!("/{VERSION}/{PHONE_NUMBER_ID}/media")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
}

impl FakeWhatsApp {
    /// The raw bodies of the media uploads the fake received, in order.
    pub async fn uploads(&self) -> Vec<Vec<u8>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().ends_with("/media"))
            .map(|r| r.body.clone())
            .collect()
    }
}

/// Meta's documented success response.
pub fn success(to_digits: &str, wamid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to_digits, "wa_id": to_digits}],
        "messages": [{"id": wamid}]
    }))
}

/// A Graph API error in Meta's documented shape.
pub fn graph_error(status: u16, code: i64, title: &str, details: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {
            "message": format!("(#{code}) {title}"),
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "error_subcode": 2_494_010,
            "fbtrace_id": "A4O5a8RAgePwbcGSu"
        }
    }))
}

/// Meta's "message undeliverable" error (131026): the recipient cannot receive it.
pub fn undeliverable() -> ResponseTemplate {
    graph_error(
        400,
        131_026,
        "Message undeliverable",
        "Receiver is incapable of receiving this message",
    )
}

/// Meta's expired-token error (code 190, HTTP 401).
pub fn expired_token() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({
        "error": {
            "message": "Error validating access token: Session has expired on Sunday, 22-Nov-26 10:00:00 PST.",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 463,
            "fbtrace_id": "AbCdEfGhIjK"
        }
    }))
}

static META_SCHEMA: LazyLock<Arc<jsonschema::Validator>> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("../../fixtures/meta/message.schema.json"))
            .expect("schema is JSON");
    Arc::new(jsonschema::validator_for(&schema).expect("Meta's Message schema compiles"))
});

/// Fails the test unless `body` is valid under Meta's `Message` schema.
pub fn assert_matches_meta_schema(body: &Value) {
    let errors: Vec<String> = META_SCHEMA
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "request does not match Meta's Message schema:\n{}\nbody: {body}",
        errors.join("\n")
    );
}
