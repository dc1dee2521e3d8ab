//! Shared test scaffolding: a router with a recording publisher, and the AWS emulator.

#![allow(dead_code)]

pub mod aws;
pub mod browser;
pub mod event_receiver;
pub mod eventually;
pub mod graph_limits;
pub mod infobip;
pub mod meta;
pub mod process;
pub mod whatsapp;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use herald::config::GatewayConfig;
use herald::contract::Envelope;
use herald::gateway::{AppState, router};
use herald::publisher::{Publisher, RecordingPublisher};

pub use eventually::eventually;

/// The `ops` key every test uses unless it tests auth itself.
pub const KEY: &str = "ops-test-key-0123456789abcdef";
/// A second configured key, id `billing`.
pub const OTHER_KEY: &str = "billing-test-key-0123456789";
/// A valid recipient.
pub const TO: &str = "+14155550123";

/// Logs are printed only with `TEST_LOG=1`, once per test binary.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("herald=debug,info")
            .with_test_writer()
            .try_init();
    }
});

/// A gateway configuration built from `extra` on top of the test defaults.
pub fn config_with(extra: &[(&str, &str)]) -> GatewayConfig {
    let mut vars: HashMap<String, String> = HashMap::from([
        (
            "API_KEYS".to_owned(),
            format!("ops:{KEY},billing:{OTHER_KEY}"),
        ),
        ("HOST".to_owned(), "127.0.0.1".to_owned()),
        ("PORT".to_owned(), "0".to_owned()),
        // The emulator on a 2-core CI machine can take longer than the
        // production limits (3 s an attempt, 10 s a request) when dozens of
        // calls arrive at once: tests check answers, not the emulator's speed.
        // Tests of the limits themselves set their own.
        ("AWS_ATTEMPT_TIMEOUT_MS".to_owned(), "30000".to_owned()),
        ("AWS_OPERATION_TIMEOUT_MS".to_owned(), "90000".to_owned()),
        ("REQUEST_TIMEOUT_MS".to_owned(), "60000".to_owned()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    GatewayConfig::from_lookup(&move |name| vars.get(name).cloned())
        .expect("test configuration is valid")
}

/// `vars` (e.g. from a fake provider's `vars`) as the pairs [`config_with`]
/// and [`process::GatewayProcess::start`] take.
pub fn pairs<'a>(vars: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The envelope the gateway would publish for the send request `body`
/// accepted with the key `key_id`.
pub fn envelope(key_id: &str, body: Value) -> Envelope {
    let message = herald::domain::OutboundMessage::try_from(body).expect("test message is valid");
    Envelope::new(uuid::Uuid::now_v7(), message, key_id)
}

/// The envelope of the text `text` to [`TO`], sent with the `ops` key.
pub fn text_envelope(text: &str) -> Envelope {
    envelope("ops", serde_json::json!({"to": TO, "message": text}))
}

/// The router over a recording publisher, driven without a socket.
pub struct TestRouter {
    pub publisher: Arc<RecordingPublisher>,
    pub state: AppState,
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl TestResponse {
    /// The body as JSON; panics with the raw body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    /// The `field` of every entry in a problem document's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the response is a problem document with `status`.
    pub fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert_eq!(self.headers["content-type"], "application/problem+json");
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert!(
            problem["title"].is_string()
                && problem["detail"].is_string()
                && problem["type"].is_string()
        );
        problem
    }
}

impl TestRouter {
    pub fn new() -> Self {
        Self::with_config(&config_with(&[]))
    }

    pub fn with_config(config: &GatewayConfig) -> Self {
        LazyLock::force(&TRACING);
        let publisher = Arc::new(RecordingPublisher::new());
        let state = AppState::new(config, publisher.clone() as Arc<dyn Publisher>);
        Self { publisher, state }
    }

    fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Sends any request.
    pub async fn call(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body reads")
            .to_bytes()
            .to_vec();
        TestResponse {
            status,
            headers,
            bytes,
        }
    }

    /// `POST /api/v1/send` with the `ops` key and a JSON body.
    pub async fn send(&self, body: impl Into<Body>) -> TestResponse {
        self.call(send_request(body)).await
    }

    /// `POST /api/v1/send` with the `ops` key, a JSON body and an `Idempotency-Key`.
    pub async fn send_idempotent(&self, key: &str, body: &str) -> TestResponse {
        let mut request = send_request(body.to_owned());
        request.headers_mut().insert(
            "idempotency-key",
            key.parse().expect("test keys are valid header values"),
        );
        self.call(request).await
    }

    /// `GET` a path without credentials.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.call(
            Request::get(path)
                .body(Body::empty())
                .expect("valid request"),
        )
        .await
    }
}

/// A `POST /api/v1/send` request with the `ops` key and JSON content type.
pub fn send_request(body: impl Into<Body>) -> Request<Body> {
    Request::post("/api/v1/send")
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("valid request")
}

/// The (status, channel) of each entry of a message view's history, in
/// order: both legs of a failover.
pub fn history_legs(view: &Value) -> Vec<(&str, &str)> {
    view["history"]
        .as_array()
        .expect("a message view has a history")
        .iter()
        .map(|h| {
            (
                h["status"].as_str().expect("each entry has a status"),
                h["channel"].as_str().expect("each entry has a channel"),
            )
        })
        .collect()
}

/// The statuses of a message view's history, in order.
pub fn history_statuses(view: &Value) -> Vec<&str> {
    view["history"]
        .as_array()
        .expect("a message view has a history")
        .iter()
        .map(|h| h["status"].as_str().expect("each entry has a status"))
        .collect()
}

/// A gateway listening on a loopback port, driven over real HTTP.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

impl TestApp {
    /// Starts `herald::startup::Application` with `publisher` on a free port.
    pub async fn spawn(config: &GatewayConfig, publisher: Arc<dyn Publisher>) -> Self {
        LazyLock::force(&TRACING);
        let app = herald::startup::Application::with_publisher(config, publisher)
            .await
            .expect("gateway binds");
        let address = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        Self {
            address,
            client: reqwest::Client::new(),
        }
    }

    /// Starts the gateway on the embedded default with its data in `data`,
    /// built from `extra` on top of the test defaults.
    pub async fn spawn_embedded(data: &Path, extra: &[(&str, &str)]) -> Self {
        let dir = data.to_str().expect("temporary paths are UTF-8");
        let mut vars = vec![("HERALD_DATA_DIR", dir)];
        vars.extend_from_slice(extra);
        Self::spawn_from_config(&config_with(&vars)).await
    }

    /// Starts the gateway exactly as the binary would build it from `config`.
    pub async fn spawn_from_config(config: &GatewayConfig) -> Self {
        LazyLock::force(&TRACING);
        let app = herald::startup::Application::build(config)
            .await
            .expect("gateway builds");
        let address = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        Self {
            address,
            client: reqwest::Client::new(),
        }
    }

    /// `POST /api/v1/send` with the `ops` key.
    pub async fn post_message(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/send", self.address))
            .header("x-api-key", KEY)
            .json(body)
            .send()
            .await
            .expect("gateway answers")
    }

    /// `POST /api/v1/send` with the `ops` key: the status code and the answer
    /// as JSON (`null` when it is not JSON).
    pub async fn send(&self, body: &Value) -> (u16, Value) {
        let response = self.post_message(body).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1/send` with the `ops` key, asserting a 202; the message id.
    pub async fn send_accepted(&self, body: &Value) -> String {
        let (status, answer) = self.send(body).await;
        assert_eq!(status, 202, "{answer}");
        answer["messageId"]
            .as_str()
            .expect("a 202 names the message")
            .to_owned()
    }

    /// `POST /api/v1/send/batch` with the `ops` key; the answer as JSON.
    pub async fn post_batch(&self, body: &Value) -> Value {
        self.client
            .post(format!("{}/api/v1/send/batch", self.address))
            .header("x-api-key", KEY)
            .json(body)
            .send()
            .await
            .expect("gateway answers")
            .json()
            .await
            .expect("a batch answer is JSON")
    }

    /// `GET /api/v1/messages/{id}` with `key`.
    pub async fn message_status(&self, id: &str, key: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/v1/messages/{id}", self.address))
            .header("x-api-key", key)
            .send()
            .await
            .expect("gateway answers")
    }

    /// `GET /api/v1/messages/{id}` with the `ops` key: the view when it is
    /// there (a `404` is `None`: with SNS the gateway writes `accepted` after
    /// the 202).
    pub async fn view(&self, id: &str) -> Option<Value> {
        let response = self.message_status(id, KEY).await;
        if response.status() != 200 {
            return None;
        }
        response.json().await.ok()
    }

    /// `GET` a path with `key`; the answer as JSON.
    pub async fn get_json(&self, path: &str, key: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.address))
            .header("x-api-key", key)
            .send()
            .await
            .expect("gateway answers")
            .json()
            .await
            .expect("the answer is JSON")
    }

    /// Polls message `id` (with the `ops` key) until its status is `want`, up
    /// to 15 s; returns the view.
    pub async fn wait_for_status(&self, id: &str, want: &str) -> Value {
        eventually(
            &format!("message {id} with status {want}"),
            Duration::from_secs(15),
            async || self.view(id).await.filter(|v| v["status"] == want),
        )
        .await
    }

    /// Polls `GET /api/v1/status/{id}` until the message has status `want`
    /// on `channel` (a failover leg's failure, not the first leg's).
    pub async fn wait_for_status_on(&self, id: &str, want: &str, channel: &str) -> Value {
        eventually(
            &format!("message {id} with status {want} on {channel}"),
            Duration::from_secs(15),
            async || {
                self.view(id)
                    .await
                    .filter(|v| v["status"] == want && v["channel"] == channel)
            },
        )
        .await
    }

    /// `DELETE` a path with `key`: the status and the answer as JSON
    /// (`null` when it is not JSON).
    pub async fn delete(&self, path: &str, key: &str) -> (u16, Value) {
        self.call_with_key(reqwest::Method::DELETE, path, key).await
    }

    /// `GET` a path with `key`: the status and the answer as JSON (`null`
    /// when it is not JSON).
    pub async fn get_with_status(&self, path: &str, key: &str) -> (u16, Value) {
        self.call_with_key(reqwest::Method::GET, path, key).await
    }

    async fn call_with_key(&self, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.address))
            .header("x-api-key", key)
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET` a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("gateway answers")
    }
}
