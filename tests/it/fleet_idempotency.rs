//! Idempotency across gateways (`STATUS_TABLE` set): two gateways behind one
//! load balancer share each `Idempotency-Key` through DynamoDB (moto), so a
//! retry that lands on the other one gets the same answer and nothing is
//! published twice.

use std::time::Duration;

use herald::fleet::FleetTable;
use herald::fleet::keys::{FleetKeys, SharedClaim};
use serde_json::{Value, json};

use crate::helpers::aws::SnsWithStatuses;
use crate::helpers::{KEY, TO, TestApp, config_with};

/// Two gateways publishing to one topic and sharing one status table.
struct Fleet {
    stack: SnsWithStatuses,
    gateways: [TestApp; 2],
}

async fn fleet(extra: &[(&str, &str)]) -> Fleet {
    let stack = SnsWithStatuses::create().await;
    let mut vars = stack.vars();
    vars.extend_from_slice(extra);
    let config = config_with(&vars);
    let gateways = [
        TestApp::spawn_from_config(&config).await,
        TestApp::spawn_from_config(&config).await,
    ];
    Fleet { stack, gateways }
}

impl Fleet {
    /// The envelopes published, counted until the queue stays empty for 2 s.
    async fn published(&self, at_least: usize) -> Vec<Value> {
        let mut all = self
            .stack
            .aws
            .drain(&self.stack.tq.queue_url, at_least, Duration::from_secs(20))
            .await;
        // Anything more (a duplicate) would arrive with the rest.
        all.extend(
            self.stack
                .aws
                .drain(&self.stack.tq.queue_url, usize::MAX, Duration::from_secs(2))
                .await,
        );
        all.iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect()
    }

    fn keys(&self, lease: Duration) -> FleetKeys {
        FleetKeys::new(
            FleetTable::new(self.stack.aws.dynamodb.clone(), &self.stack.table),
            Duration::from_secs(3600),
            lease,
        )
    }
}

async fn post(
    app: &TestApp,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .header("x-api-key", KEY)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_retry_on_the_other_gateway_gets_the_same_id_and_publishes_nothing() {
    let fleet = fleet(&[]).await;
    let body = json!({"to": TO, "message": "once"});
    let (status, _, first) = post(&fleet.gateways[0], "/api/v1/send", "k-1", &body).await;
    assert_eq!(status, 202, "{first}");
    let (status, _, retry) = post(&fleet.gateways[1], "/api/v1/send", "k-1", &body).await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(retry["messageId"], first["messageId"]);
    // And back on the first one (its own table's fast path).
    let (_, _, again) = post(&fleet.gateways[0], "/api/v1/send", "k-1", &body).await;
    assert_eq!(again["messageId"], first["messageId"]);

    let published = fleet.published(1).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["id"], first["messageId"]);
}

#[tokio::test]
async fn the_same_key_with_another_body_on_the_other_gateway_is_422() {
    let fleet = fleet(&[]).await;
    let (status, _, _) = post(
        &fleet.gateways[0],
        "/api/v1/send",
        "k-2",
        &json!({"to": TO, "message": "a"}),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _, problem) = post(
        &fleet.gateways[1],
        "/api/v1/send",
        "k-2",
        &json!({"to": TO, "message": "b"}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "idempotency-key-reused");
    // The refusal did not poison the other gateway's table for the right body.
    let (status, _, _) = post(
        &fleet.gateways[1],
        "/api/v1/send",
        "k-2",
        &json!({"to": TO, "message": "a"}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(fleet.published(1).await.len(), 1);
}

#[tokio::test]
async fn concurrent_duplicates_on_both_gateways_publish_once() {
    let fleet = fleet(&[]).await;
    let body = json!({"to": TO, "message": "race"});
    let mut tasks = Vec::new();
    for i in 0..12 {
        let app = TestApp {
            address: fleet.gateways[i % 2].address.clone(),
            client: reqwest::Client::new(),
        };
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            post(&app, "/api/v1/send", "k-race", &body).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (status, _, answer) = task.await.unwrap();
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["messageId"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(fleet.published(1).await.len(), 1);
}

#[tokio::test]
async fn a_batch_retried_on_the_other_gateway_gets_the_same_answer() {
    let fleet = fleet(&[]).await;
    let body = json!({"messages": [
        {"to": TO, "message": "one"},
        {"to": "+14155550124", "message": "two"},
    ]});
    let (status, _, first) = post(&fleet.gateways[0], "/api/v1/send/batch", "b-1", &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["accepted"], 2);
    let (status, _, retry) = post(&fleet.gateways[1], "/api/v1/send/batch", "b-1", &body).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry, first);
    assert_eq!(fleet.published(2).await.len(), 2);
}

#[tokio::test]
async fn a_key_in_flight_elsewhere_is_409_with_retry_after_and_nothing_is_published() {
    // Requests wait up to half of REQUEST_TIMEOUT_MS for the other attempt.
    let fleet = fleet(&[("REQUEST_TIMEOUT_MS", "2000")]).await;
    let body = json!({"to": TO, "message": "slow elsewhere"});
    // Another gateway holds the key: claimed, still publishing.
    let keys = fleet.keys(Duration::from_secs(60));
    let digest: [u8; 32] = sha2_digest(&serde_json::to_vec(&body).unwrap());
    let held = uuid::Uuid::now_v7();
    let claim = keys
        .claim("ops", "k-held", &digest, held, tokio::time::Instant::now())
        .await
        .unwrap();
    let SharedClaim::Mine {
        id,
        retry: false,
        owner,
    } = claim
    else {
        panic!("a fresh key is claimed: {claim:?}");
    };
    assert_eq!(id, held);

    let (status, headers, problem) =
        post(&fleet.gateways[0], "/api/v1/send", "k-held", &body).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "idempotency-key-in-flight");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The other gateway finishes: the retry is a replay of its id.
    keys.published("ops", "k-held", owner, None).await.unwrap();
    let (status, _, answer) = post(&fleet.gateways[0], "/api/v1/send", "k-held", &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["messageId"], held.to_string());
    assert!(fleet.published(0).await.is_empty());
}

#[tokio::test]
async fn a_claim_whose_gateway_died_is_taken_over_under_its_id() {
    let fleet = fleet(&[]).await;
    let body = json!({"to": TO, "message": "orphaned"});
    // A gateway claimed the key and died before publishing: its lease lapses.
    let keys = fleet.keys(Duration::from_millis(1));
    let digest: [u8; 32] = sha2_digest(&serde_json::to_vec(&body).unwrap());
    let orphan = uuid::Uuid::now_v7();
    keys.claim(
        "ops",
        "k-orphan",
        &digest,
        orphan,
        tokio::time::Instant::now(),
    )
    .await
    .unwrap();

    let (status, _, answer) = post(&fleet.gateways[1], "/api/v1/send", "k-orphan", &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["messageId"], orphan.to_string());
    let published = fleet.published(1).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["id"], orphan.to_string());
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[tokio::test]
async fn a_batch_answer_larger_than_a_dynamodb_item_is_replayed_whole() {
    let fleet = fleet(&[
        ("BATCH_MAX_MESSAGES", "10000"),
        ("BATCH_MAX_BODY_BYTES", "4194304"),
    ])
    .await;
    // One entry accepted, and thousands the gateway refuses: an answer of
    // several hundred kilobytes, one message published.
    let mut entries: Vec<Value> = (0..4000)
        .map(|i| json!({"to": format!("+1 415 {i}"), "message": "x"}))
        .collect();
    entries[0] = json!({"to": TO, "message": "the one"});
    let body = json!({ "messages": entries });
    let (status, _, first) = post(&fleet.gateways[0], "/api/v1/send/batch", "big", &body).await;
    assert_eq!(
        (first["accepted"].clone(), first["rejected"].clone()),
        (json!(1), json!(3999)),
        "{status}"
    );
    assert!(serde_json::to_vec(&first).unwrap().len() > 400_000);
    let (_, _, retry) = post(&fleet.gateways[1], "/api/v1/send/batch", "big", &body).await;
    assert_eq!(retry, first);
    assert_eq!(fleet.published(1).await.len(), 1);
}
