//! The embedded default as a process: what a new user runs, killed with SIGKILL
//! and restarted, refusing to start when it cannot keep its promise.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::process::{GatewayProcess, gateway_command};
use crate::helpers::whatsapp::{FakeWhatsApp, TOKEN, graph_error, send_endpoint, success};
use crate::helpers::{KEY, TO, eventually, pairs};

async fn post(client: &reqwest::Client, address: &str, body: &Value) -> reqwest::Response {
    client
        .post(format!("{address}/api/v1/send"))
        .header("x-api-key", KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Texts of the successful deliveries the fake saw, with how many times each.
async fn delivered_texts(fake: &FakeWhatsApp) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for body in fake.bodies().await {
        *counts
            .entry(body["text"]["body"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// Accept while WhatsApp fails, SIGKILL, restart on the same data dir, let
/// WhatsApp succeed: every accepted message is delivered, each exactly once.
#[tokio::test]
async fn accepted_messages_survive_sigkill_and_are_delivered_once() {
    // Arrange: a fake that fails everything, and a gateway that retries quickly.
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(graph_error(503, 131_016, "Service unavailable", "down"))
        .mount(&fake.server)
        .await;
    let whatsapp = fake.vars();
    let mut vars = pairs(&whatsapp);
    vars.extend([
        ("DELIVERY_RETRY_BASE_MS", "50"),
        ("DELIVERY_RETRY_MAX_MS", "200"),
        ("DELIVERY_MAX_ATTEMPTS", "100"),
        // Five 503s open the circuit; a short cool-down keeps the holds it
        // puts on the queued messages short, before and after the restart.
        ("CIRCUIT_COOLDOWN_MS", "200"),
    ]);
    let gateway = GatewayProcess::start(&data_dir, &vars);
    let client = reqwest::Client::new();

    // Act: accept 30 messages, see some attempts fail, then kill -9.
    let mut accepted = Vec::new();
    for i in 0..30 {
        let text = format!("survivor {i}");
        assert_eq!(
            post(
                &client,
                &gateway.address,
                &json!({"to": TO, "message": text})
            )
            .await
            .status(),
            202
        );
        accepted.push(text);
    }
    eventually(
        "deliveries attempted before the kill",
        Duration::from_secs(10),
        async || (!fake.bodies().await.is_empty()).then_some(()),
    )
    .await;
    gateway.kill_hard();

    // WhatsApp recovers; the gateway restarts on the same directory.
    fake.server.reset().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.ok"))
        .mount(&fake.server)
        .await;
    let restarted = GatewayProcess::start(&data_dir, &vars);

    // Assert: every accepted message arrives exactly once.
    eventually(
        "every accepted message delivered",
        Duration::from_secs(30),
        async || (delivered_texts(&fake).await.len() >= accepted.len()).then_some(()),
    )
    .await;
    // Not a wait for an outcome: time for a second delivery to show up, if one were made.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = delivered_texts(&fake).await;
    for text in &accepted {
        assert_eq!(
            delivered.get(text),
            Some(&1),
            "{text} delivered {:?} times",
            delivered.get(text)
        );
    }
    assert_eq!(delivered.len(), accepted.len());
    let health: Value = client
        .get(format!("{}/health", restarted.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["checks"]["queue"]["detail"]["depth"], 0);
    // Secrets and numbers never reach the logs.
    let logs: Vec<String> = restarted
        .startup_logs
        .iter()
        .cloned()
        .chain(restarted.logs.try_iter())
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("message delivered")),
        "outcome lines are logged"
    );
    for line in &logs {
        assert!(
            !line.contains(TOKEN) && !line.contains(KEY) && !line.contains("4155550123"),
            "{line}"
        );
    }
}

/// The README's first command: only an API key, console delivery, the startup
/// lines say which mode, which delivery and where the data lives.
#[tokio::test]
async fn with_only_an_api_key_sends_are_delivered_to_the_console() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let gateway = GatewayProcess::start(&data_dir, &[]);
    let client = reqwest::Client::new();

    let response = post(
        &client,
        &gateway.address,
        &json!({"to": TO, "message": "hello console"}),
    )
    .await;
    assert_eq!(response.status(), 202);

    let line = gateway
        .next_stdout_line(Duration::from_secs(10))
        .expect("a console delivery line");
    let body: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(body["to"], "14155550123");
    assert_eq!(body["text"]["body"], "hello console");
    assert_eq!(body["messaging_product"], "whatsapp");

    // One log line for the request: ids and the masked recipient, never the key or the number.
    let request_line =
        std::iter::from_fn(|| gateway.logs.recv_timeout(Duration::from_secs(5)).ok())
            .find(|l| l.contains("\"message\":\"request\""))
            .expect("a request log line");
    let line: Value = serde_json::from_str(&request_line).unwrap();
    assert_eq!(line["status"], 202);
    assert_eq!(line["api_key_id"], "ops");
    assert_eq!(line["to"], "+1********23");
    assert_eq!(line["path"], "/api/v1/send");
    assert!(
        line["message_id"].is_string() && line["request_id"].is_string(),
        "{line}"
    );
    assert!(
        !request_line.contains(KEY) && !request_line.contains("4155550123"),
        "{request_line}"
    );

    let logs = &gateway.startup_logs;
    let startup = logs
        .iter()
        .find(|l| l.contains("\"mode\":\"embedded\""))
        .expect("a startup line naming the mode");
    assert!(
        startup.contains("console") && startup.contains(data_dir.to_str().unwrap()),
        "{startup}"
    );
    assert!(
        logs.iter().any(|l| l.contains("no WhatsApp credentials")),
        "{logs:#?}"
    );
}

/// No API key, no start: the one line says what to set.
#[test]
fn without_api_keys_the_gateway_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let output = gateway_command(data.path(), &[])
        .env_remove("API_KEYS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("API_KEYS is not set"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// A data directory that cannot be created stops the gateway with a line naming it.
#[test]
fn an_unusable_data_dir_stops_the_gateway() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let output = gateway_command(&file, &[]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HERALD_DATA_DIR"), "{stderr}");
}

/// A second gateway on the same data directory refuses to start.
#[tokio::test]
async fn a_second_gateway_cannot_share_the_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let _first = GatewayProcess::start(&data_dir, &[]);
    let output = gateway_command(&data_dir, &[]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HERALD_DATA_DIR"));
}

/// SIGTERM: the gateway stops accepting, finishes what is in flight and exits 0.
#[tokio::test]
async fn sigterm_stops_the_gateway_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(&data.path().join("data"), &[]);
    let client = reqwest::Client::new();
    assert_eq!(
        post(
            &client,
            &gateway.address,
            &json!({"to": TO, "message": "last one"})
        )
        .await
        .status(),
        202
    );

    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(gateway.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let mut gateway = gateway;
    let (status, stopped) = tokio::task::spawn_blocking(move || {
        let status = gateway.child.wait().unwrap();
        // Read until the stream ends: the last lines may still be in the pipe.
        let stopped = std::iter::from_fn(|| gateway.logs.recv_timeout(Duration::from_secs(5)).ok())
            .any(|l| l.contains("\"message\":\"stopped\""));
        (status, stopped)
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(stopped, "no 'stopped' line after SIGTERM");
}
