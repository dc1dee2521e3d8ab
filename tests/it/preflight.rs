//! Misconfiguration caught at start: a topic, queue or status table that
//! does not exist, or a table whose keys are not Herald's, stops the gateway
//! and the consumer with one line naming the variable. (Before: with a table
//! without a sort key the gateway accepted every send and the consumer
//! retried every message for ever, logging a 2 KB SDK dump each time.)

use std::process::Command;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::helpers::aws::{emulator, unique_name};
use crate::helpers::config_with;

/// The error line the gateway stops with under `vars`.
async fn gateway_refusal(vars: &[(&str, &str)]) -> String {
    match herald::startup::Application::build(&config_with(vars)).await {
        Ok(_) => panic!("the gateway started with {vars:?}"),
        Err(e) => e.to_string(),
    }
}

/// A table keyed by `pk` alone, as someone might create by hand.
async fn table_without_sort_key(aws: &crate::helpers::aws::Emulator) -> String {
    let name = unique_name("herald-wrong");
    aws.dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn the_gateway_refuses_resources_it_cannot_use() {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 3).await;
    let missing_topic = format!("arn:aws:sns:us-east-1:123456789012:{}", unique_name("none"));
    let line = gateway_refusal(&[("SNS_TOPIC_ARN", &missing_topic)]).await;
    assert!(line.starts_with("SNS_TOPIC_ARN is invalid"), "{line}");
    assert!(line.contains("NotFound"), "{line}");
    assert!(
        !line.contains('\n') && line.len() < 300,
        "one short line: {line}"
    );

    let wrong = table_without_sort_key(&aws).await;
    let line = gateway_refusal(&[("SNS_TOPIC_ARN", &tq.topic_arn), ("STATUS_TABLE", &wrong)]).await;
    assert!(line.starts_with("STATUS_TABLE is invalid"), "{line}");
    assert!(line.contains("sort key none"), "{line}");

    let line = gateway_refusal(&[
        ("SNS_TOPIC_ARN", &tq.topic_arn),
        ("STATUS_TABLE", &unique_name("no-such-table")),
    ])
    .await;
    assert!(line.starts_with("STATUS_TABLE is invalid"), "{line}");
    assert!(line.contains("ResourceNotFoundException"), "{line}");

    let table = aws.status_table().await;
    let line = gateway_refusal(&[
        ("SNS_TOPIC_ARN", &tq.topic_arn),
        ("STATUS_TABLE", &table),
        ("EVENTS_TOPIC_ARN", &missing_topic),
    ])
    .await;
    assert!(line.starts_with("EVENTS_TOPIC_ARN is invalid"), "{line}");
}

#[tokio::test]
async fn the_consumer_refuses_a_queue_or_table_it_cannot_use() {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 3).await;
    let consumer = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald-consumer"));
        command
            .env_remove("WHATSAPP_ACCESS_TOKEN")
            .env_remove("STATUS_TABLE");
        for (k, v) in vars {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "it started with {vars:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing_queue = format!("{}-gone", tq.queue_url);
    let stderr = consumer(&[("SQS_QUEUE_URL", &missing_queue)]);
    assert!(stderr.contains("SQS_QUEUE_URL is invalid"), "{stderr}");
    let wrong = table_without_sort_key(&aws).await;
    let stderr = consumer(&[("SQS_QUEUE_URL", &tq.queue_url), ("STATUS_TABLE", &wrong)]);
    assert!(stderr.contains("STATUS_TABLE is invalid"), "{stderr}");
}
