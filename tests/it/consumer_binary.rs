//! The `herald-consumer` binary as an operator runs it: poller mode against the
//! emulator, console delivery without credentials, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::aws::emulator;
use crate::helpers::process::KilledOnDrop;
use crate::helpers::{TO, TestApp, config_with, eventually};

/// Without WhatsApp credentials the poller delivers to the console, says so at
/// startup, prints the exact request body per message, and stops on SIGTERM.
#[tokio::test]
async fn the_poller_prints_console_deliveries_and_stops_on_sigterm() {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 3).await;
    let gateway =
        TestApp::spawn_from_config(&config_with(&[("SNS_TOPIC_ARN", &tq.topic_arn)])).await;
    let response = gateway
        .post_message(&json!({"to": TO, "message": "to the console", "callbackData": "cb-1"}))
        .await;
    assert_eq!(response.status(), 202);
    let response_id = response.json::<Value>().await.unwrap()["messageId"].clone();

    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald-consumer"))
        .env("SQS_QUEUE_URL", &tq.queue_url)
        .env("HOST", "127.0.0.1")
        .env("METRICS_PORT", metrics_port.to_string())
        .env_remove("WHATSAPP_ACCESS_TOKEN")
        .env_remove("WHATSAPP_PHONE_NUMBER_ID")
        .env_remove("DELIVERY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the consumer binary starts");

    // Read the first stdout line on a thread: it is the console delivery.
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("a delivery within 20 s")
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_str(&line).expect("one JSON line per message");
    assert_eq!(
        body,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "14155550123", "type": "text",
            "text": {"body": "to the console", "preview_url": false}, "biz_opaque_callback_data": "cb-1"})
    );

    // The poller's /metrics (METRICS_PORT) counts the delivery.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("the poller serves /metrics")
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("herald_deliveries_total{")
                && l.contains("channel=\"whatsapp\"")
                && l.contains("outcome=\"delivered\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("delivering to the console"), "{logs}");
    assert!(logs.contains("sqs-poller"), "{logs}");
    assert!(logs.contains("poller stopped"), "{logs}");
    // One structured line per outcome, with the envelope id and the action.
    let outcome = logs
        .lines()
        .find(|l| l.contains("message delivered"))
        .expect("an outcome line");
    let outcome: Value = serde_json::from_str(outcome).unwrap();
    assert_eq!(outcome["action"], "delivered");
    assert_eq!(outcome["span"]["envelope_id"], response_id);
    assert_eq!(outcome["span"]["to"], "+1********23");
    assert!(
        !logs.contains("4155550123"),
        "an unmasked number reached the logs: {logs}"
    );
}

/// Without a queue URL or a Lambda runtime, the binary stops with one line naming the variable.
#[test]
fn the_consumer_refuses_to_start_without_a_queue() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald-consumer"))
        .env_remove("SQS_QUEUE_URL")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("DELIVERY", "console")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SQS_QUEUE_URL is not set"));
}

/// The consumer reads its WhatsApp token from Secrets Manager at start-up
/// when `WHATSAPP_ACCESS_TOKEN_SECRET_ID` names a secret (the template passes
/// names, never values), sends with it, and never logs it.
#[tokio::test]
async fn the_token_comes_from_secrets_manager_and_is_never_logged() {
    use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 3).await;
    let secret = crate::helpers::aws::unique_name("herald-wa-token");
    aws.secrets
        .create_secret()
        .name(&secret)
        .secret_string(wa::TOKEN)
        .send()
        .await
        .unwrap();
    let fake = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.fromsecret"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let gateway =
        TestApp::spawn_from_config(&config_with(&[("SNS_TOPIC_ARN", &tq.topic_arn)])).await;
    let response = gateway
        .post_message(&json!({"to": TO, "message": "token from a secret"}))
        .await;
    assert_eq!(response.status(), 202);

    let child = Command::new(env!("CARGO_BIN_EXE_herald-consumer"))
        .env("SQS_QUEUE_URL", &tq.queue_url)
        .env("WHATSAPP_ACCESS_TOKEN_SECRET_ID", &secret)
        .env("WHATSAPP_PHONE_NUMBER_ID", wa::PHONE_NUMBER_ID)
        .env("WHATSAPP_API_BASE_URL", fake.server.uri())
        .env("LOG_LEVEL", "debug")
        .env_remove("WHATSAPP_ACCESS_TOKEN")
        .env_remove("DELIVERY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the consumer binary starts");
    let child = KilledOnDrop::new(child);
    eventually(
        "a send with the token",
        Duration::from_secs(30),
        async || {
            let requests = fake.server.received_requests().await.unwrap_or_default();
            (!requests.is_empty()).then_some(())
        },
    )
    .await;
    let output = child.kill();
    fake.server.verify().await;
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(!logs.contains(wa::TOKEN), "the token reached a log line");

    // A secret that cannot be read stops the consumer with one line naming
    // the variable.
    let output = Command::new(env!("CARGO_BIN_EXE_herald-consumer"))
        .env("SQS_QUEUE_URL", &tq.queue_url)
        .env("WHATSAPP_ACCESS_TOKEN_SECRET_ID", "no-such-secret")
        .env("WHATSAPP_PHONE_NUMBER_ID", wa::PHONE_NUMBER_ID)
        .env_remove("WHATSAPP_ACCESS_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("WHATSAPP_ACCESS_TOKEN_SECRET_ID is invalid")
            && stderr.contains("ResourceNotFoundException"),
        "{stderr}"
    );
}

/// A "cannot reach" report that comes before the consumer has recorded the
/// send is merged by the consumer's write, and the consumer binary sends the
/// message's SMS fallback (it publishes the leg to SNS_TOPIC_ARN). Before,
/// the consumer built its store without the failover path: no SMS.
#[tokio::test]
async fn an_early_cannot_reach_report_merged_by_the_consumer_sends_the_fallback() {
    use crate::helpers::infobip::{self, FakeInfobip};
    use crate::helpers::meta::{self, MetaSender};
    use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let (tq, table) = (&stack.tq, &stack.table);
    let mut vars = stack.vars();
    vars.extend(meta::webhook_vars());
    let gateway = TestApp::spawn_from_config(&config_with(&vars)).await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.EARLY"))
        .mount(&whatsapp.server)
        .await;
    let infobip = FakeInfobip::accepting().await;

    let id = gateway
        .send_accepted(&json!({"to": TO, "message": "hi",
            "fallback": {"channel": "sms", "message": "hi by SMS"}}))
        .await;
    // Meta's failure report arrives before the consumer has sent anything.
    let failed = meta::failed(
        "wamid.EARLY",
        131_026,
        "Message undeliverable",
        1_750_000_005,
    );
    let meta_sender = MetaSender::new(&gateway.address);
    assert_eq!(
        meta_sender.post(&meta::payload(vec![failed], vec![])).await,
        200
    );

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut vars = whatsapp.vars();
    vars.extend(infobip.vars(infobip::PUBLIC));
    vars.push(("SNS_TOPIC_ARN", tq.topic_arn.clone()));
    vars.push(("DELIVERY_RETRY_BASE_MS", "50".into()));
    let child = crate::helpers::process::consumer(&tq.queue_url, table, &vars, &log);
    crate::helpers::eventually::eventually_or(
        "the SMS fallback sent",
        Duration::from_secs(40),
        async || (!infobip.bodies().await.is_empty()).then_some(()),
        || {
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            format!("the consumer's log:\n{log}")
        },
    )
    .await;
    // The consumer records `submitted` after Infobip's answer: it runs
    // until the status is there (killing it at the SMS raced that write).
    let view = gateway.wait_for_status(&id, "submitted").await;
    assert_eq!(view["channel"], "sms");
    child.kill();
    let sms = infobip.bodies().await;
    assert_eq!(sms.len(), 1, "the fallback went by SMS once");
}
