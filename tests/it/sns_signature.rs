//! Herald's own `PublishBatch` client (`SNS_CLIENT=lean`) signs requests that a
//! signature-checking emulator accepts: a second moto server started by
//! `scripts/test.sh` with `INITIAL_NO_AUTH_ACTION_COUNT=4` recomputes every
//! SigV4 signature with botocore and refuses mismatches. The first four actions
//! (unsigned) create an IAM user, its key, its policy and a topic.

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use herald::publisher::SnsPublisher;
use herald::publisher::sns::{BatchClient, LeanClient};
use serde_json::{Value, json};

use crate::helpers::{TO, TestApp, config_with};

const HOW_TO_START: &str = "the signature-checking emulator is not running: run the suite with `scripts/test.sh`, \
    or start `INITIAL_NO_AUTH_ACTION_COUNT=4 moto_server -H 127.0.0.1 -p 5001` and export \
    HERALD_TEST_SIGNED_AWS_URL=http://127.0.0.1:5001 (restart it before each run: the four unsigned actions are spent)";

/// One unsigned query-protocol call during moto's no-auth window. The header
/// only routes the call to `service`; its signature is not checked yet.
async fn unsigned(url: &str, service: &str, form: &[(&str, &str)]) -> String {
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDSETUP/20261123/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let response = reqwest::Client::new()
        .post(url)
        .header("authorization", authorization)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{HOW_TO_START} ({e})"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(
        status.is_success(),
        "{service} setup call failed ({status}): {text}"
    );
    text
}

fn between<'a>(xml: &'a str, tag: &str) -> &'a str {
    let start = xml.find(&format!("<{tag}>")).expect("tag present") + tag.len() + 2;
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .expect("closing tag")
        + start;
    &xml[start..end]
}

async fn publisher(url: &str, key: &str, secret: &str, topic: &str) -> SnsPublisher {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    let lean = LeanClient::from_sdk_config(&config).expect("region and credentials are set");
    SnsPublisher::new(
        aws_sdk_sns::Client::new(&config),
        BatchClient::Lean(lean),
        topic,
        Duration::from_millis(1),
    )
}

/// Signed with the right secret, the lean client's publish is accepted; with a
/// wrong one the emulator refuses the signature and the client gets a 503.
#[tokio::test]
async fn the_lean_client_signs_requests_the_emulator_verifies() {
    let url =
        std::env::var("HERALD_TEST_SIGNED_AWS_URL").unwrap_or_else(|_| panic!("{HOW_TO_START}"));
    // Arrange: the four unsigned actions.
    unsigned(
        &url,
        "iam",
        &[
            ("Action", "CreateUser"),
            ("Version", "2010-05-08"),
            ("UserName", "herald"),
        ],
    )
    .await;
    let key = unsigned(
        &url,
        "iam",
        &[
            ("Action", "CreateAccessKey"),
            ("Version", "2010-05-08"),
            ("UserName", "herald"),
        ],
    )
    .await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sns:*","Resource":"*"}]}"#;
    unsigned(
        &url,
        "iam",
        &[
            ("Action", "PutUserPolicy"),
            ("Version", "2010-05-08"),
            ("UserName", "herald"),
            ("PolicyName", "publish"),
            ("PolicyDocument", policy),
        ],
    )
    .await;
    let topic = unsigned(
        &url,
        "sns",
        &[
            ("Action", "CreateTopic"),
            ("Version", "2010-03-31"),
            ("Name", "signed"),
        ],
    )
    .await;
    let (key_id, secret, topic_arn) = (
        between(&key, "AccessKeyId").to_owned(),
        between(&key, "SecretAccessKey").to_owned(),
        between(&topic, "TopicArn").to_owned(),
    );

    // Act and assert: the right secret publishes.
    let good = TestApp::spawn(
        &config_with(&[]),
        Arc::new(publisher(&url, &key_id, &secret, &topic_arn).await),
    )
    .await;
    let response = good
        .post_message(&json!({"to": TO, "message": "signed"}))
        .await;
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());

    // A wrong secret is refused by the signature check: 503, the operator's problem.
    let bad = TestApp::spawn(
        &config_with(&[]),
        Arc::new(publisher(&url, &key_id, "not-the-secret", &topic_arn).await),
    )
    .await;
    let response = bad
        .post_message(&json!({"to": TO, "message": "forged"}))
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "queue-unavailable");
}
