//! Tenants with AWS (moto: SNS, SQS, DynamoDB): the envelope names its
//! tenant and number and is published in the tenant's message group; the
//! consumer sends from that number with its token; consent and statuses in
//! DynamoDB are the tenant's.

use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::{Value, json};

use crate::helpers::aws::{SnsWithStatuses, emulator};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::process::KilledOnDrop;
use crate::helpers::whatsapp as wa;
use crate::helpers::{KEY, OTHER_KEY, TO, eventually};
use crate::tenants::{ACME_KEY, ACME_NUMBER, ACME_TOKEN, TWO_TENANTS, Tenants};

#[tokio::test]
async fn each_envelope_names_its_tenant_and_number_and_travels_in_its_group() {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let t = Tenants::start(TWO_TENANTS, &[("SNS_TOPIC_ARN", tq.topic_arn.as_str())]).await;
    let acme = t
        .send(
            KEY,
            &json!({"to": TO, "message": "otp", "priority": "high"}),
        )
        .await;
    assert_eq!(acme.0, 202, "{}", acme.1);
    assert_eq!(
        t.send(OTHER_KEY, &json!({"to": TO, "message": "news"}))
            .await
            .0,
        202
    );

    let received = aws.drain(&tq.queue_url, 2, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 2);
    let mut seen: Vec<(String, Option<String>, Value, Option<String>)> = received
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned();
            (
                envelope["tenant"].as_str().unwrap().to_owned(),
                envelope["from"].as_str().map(str::to_owned),
                envelope["priority"].clone(),
                group,
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            (
                "acme".into(),
                Some(ACME_NUMBER.into()),
                json!("high"),
                Some("acme".into())
            ),
            (
                "globex".into(),
                Some(wa::PHONE_NUMBER_ID.into()),
                Value::Null,
                Some("globex".into())
            ),
        ]
    );
}

#[tokio::test]
async fn the_consumer_sends_each_tenants_message_from_its_number_with_its_token() {
    let stack = SnsWithStatuses::create().await;
    let (tq, table) = (&stack.tq, &stack.table);
    let t = Tenants::start(TWO_TENANTS, &stack.vars()).await;
    let acme = t
        .send(KEY, &json!({"to": TO, "message": "from acme"}))
        .await
        .1;
    let globex = t
        .send(OTHER_KEY, &json!({"to": TO, "message": "from globex"}))
        .await
        .1;

    let child = Command::new(env!("CARGO_BIN_EXE_herald-consumer"))
        .env("SQS_QUEUE_URL", &tq.queue_url)
        .env("STATUS_TABLE", table)
        .env("TENANTS_FILE", &t.file)
        .env("ACME_WA_TOKEN", ACME_TOKEN)
        .envs(t.whatsapp.vars())
        .env_remove("DELIVERY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the consumer binary starts");
    let child = KilledOnDrop::new(child);
    let bodies = t.wait_for_graph(2).await;
    let numbers = t.graph_numbers().await;
    let from = |text: &str| {
        let i = bodies
            .iter()
            .position(|b| b["text"]["body"] == text)
            .unwrap();
        numbers[i].clone()
    };
    assert_eq!(
        from("from acme"),
        ACME_NUMBER,
        "with acme's token (the fake checks it)"
    );
    assert_eq!(from("from globex"), wa::PHONE_NUMBER_ID);
    // The statuses in DynamoDB are each tenant's.
    for (answer, own, other) in [(&acme, ACME_KEY, OTHER_KEY), (&globex, OTHER_KEY, KEY)] {
        let path = format!("/api/v1/messages/{}", answer["messageId"].as_str().unwrap());
        let view = eventually(
            "the submitted status",
            Duration::from_secs(20),
            async || {
                let (code, view) = t.get(own, &path).await;
                (code == 200 && view["status"] == "submitted").then_some(view)
            },
        )
        .await;
        assert_eq!(view["status"], "submitted");
        assert_eq!(t.get(other, &path).await.0, 404);
    }
    child.kill();
}

#[tokio::test]
async fn consent_in_dynamodb_belongs_to_the_tenant_whose_number_was_written_to() {
    let stack = SnsWithStatuses::create().await;
    let t = Tenants::start(TWO_TENANTS, &stack.vars()).await;
    let mut payload = meta::payload(
        vec![],
        vec![meta::inbound(
            "wamid.STOP-AWS",
            "text",
            json!({"body": "STOP"}),
        )],
    );
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!(ACME_NUMBER);
    assert_eq!(MetaSender::new(&t.app.address).post(&payload).await, 200);
    let msg = json!({"to": format!("+{}", meta::CUSTOMER), "message": "hi"});
    assert_eq!(t.send(KEY, &msg).await.1["code"], "recipient-opted-out");
    assert_eq!(t.send(OTHER_KEY, &msg).await.0, 202);
    let path = format!("/api/v1/opt-outs/%2B{}", meta::CUSTOMER);
    let (code, opt_out) = t.get(ACME_KEY, &path).await;
    assert_eq!((code, opt_out["tenant"].as_str()), (200, Some("acme")));
    assert_eq!(t.get(OTHER_KEY, &path).await.0, 404);
    // The API's change is the caller's tenant's: globex's PUT leaves acme's
    // STOP as it was and blocks globex's own sends.
    let (code, _) = t
        .call(
            reqwest::Method::PUT,
            &path,
            OTHER_KEY,
            Some(&json!({"channels": ["all"]})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        t.send(OTHER_KEY, &msg).await.1["code"],
        "recipient-opted-out"
    );
    let (_, acme) = t.get(KEY, &path).await;
    assert_eq!(acme["channels"], json!(["whatsapp"]));
}

/// A tenant's token named `secretsmanager:NAME` is read from Secrets
/// Manager at start-up (the file holds names, never values); one that
/// cannot be read stops the consumer with a line naming `TENANTS_FILE`.
#[tokio::test]
async fn a_tenants_token_comes_from_secrets_manager() {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let secret = crate::helpers::aws::unique_name("acme-wa-token");
    aws.secrets
        .create_secret()
        .name(&secret)
        .secret_string(ACME_TOKEN)
        .send()
        .await
        .unwrap();
    let file = TWO_TENANTS.replace("env:ACME_WA_TOKEN", &format!("secretsmanager:{secret}"));
    let reference = format!("secretsmanager:{secret}");
    let t = Tenants::start(
        &file,
        &[
            ("SNS_TOPIC_ARN", tq.topic_arn.as_str()),
            // The gateway's configuration is built from a map here, which
            // holds what `secrets::load_config` would have read.
            (reference.as_str(), ACME_TOKEN),
        ],
    )
    .await;
    assert_eq!(
        t.send(KEY, &json!({"to": TO, "message": "secret"})).await.0,
        202
    );
    let consumer = |tenants_file: &std::path::Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald-consumer"));
        command
            .env("SQS_QUEUE_URL", &tq.queue_url)
            .env("TENANTS_FILE", tenants_file)
            .envs(t.whatsapp.vars())
            .env_remove("ACME_WA_TOKEN")
            .env_remove("DELIVERY");
        command
    };
    let child = consumer(&t.file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the consumer binary starts");
    let child = KilledOnDrop::new(child);
    t.wait_for_graph(1).await;
    let output = child.kill();
    assert_eq!(t.graph_numbers().await, [ACME_NUMBER]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains(ACME_TOKEN));

    let missing = t.file.with_file_name("missing.toml");
    std::fs::write(
        &missing,
        TWO_TENANTS.replace("env:ACME_WA_TOKEN", "secretsmanager:no-such-secret"),
    )
    .unwrap();
    let output = consumer(&missing).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TENANTS_FILE is invalid") && stderr.contains("ResourceNotFoundException"),
        "{stderr}"
    );
}
