//! `GET /api/v1/messages` and `GET /api/v1/stats`, on the embedded default
//! and with SNS and `STATUS_TABLE` (the template's global secondary index
//! and the counters in DynamoDB): the same assertions for both.

use serde_json::{Value, json};

use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, OTHER_KEY, TestApp, config_with, eventually, pairs};

const NUMBERS: [&str; 3] = ["+14155550101", "+14155550102", "+14155550103"];

async fn whatsapp_accepting() -> FakeWhatsApp {
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550101", "wamid.SEARCH"))
        .mount(&whatsapp.server)
        .await;
    whatsapp
}

async fn get(app: &TestApp, path: &str, key: &str) -> (u16, Value) {
    app.get_with_status(path, key).await
}

fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {page}"))
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect()
}

fn fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().map(|e| e["field"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// Sends one message to each of [`NUMBERS`] (the last by SMS-less batch
/// with a batch id) and waits until each is `submitted`; returns the ids,
/// oldest first.
async fn send_three(app: &TestApp) -> (Vec<String>, String) {
    let mut sent = Vec::new();
    for to in &NUMBERS[..2] {
        sent.push(
            app.send_accepted(&json!({"to": to, "message": "hello"}))
                .await,
        );
    }
    let batch = app
        .post_batch(&json!({"messages": [{"to": NUMBERS[2], "message": "sale"}]}))
        .await;
    sent.push(
        batch["results"][0]["messageId"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for id in &sent {
        app.wait_for_status(id, "submitted").await;
    }
    (sent, batch["batchId"].as_str().unwrap().to_owned())
}

/// The whole contract of the search over three messages of `KEY`.
async fn search_contract(app: &TestApp) {
    let (sent, batch) = send_three(app).await;
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();

    // The list can lag the statuses a moment with SNS (the index is eventually consistent).
    let (_, all) = eventually(
        "all three listed as submitted",
        std::time::Duration::from_secs(15),
        async || {
            let (status, page) = get(app, "/api/v1/messages", KEY).await;
            (status == 200
                && ids(&page) == newest_first
                && page["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|m| m["status"] == "submitted"))
            .then_some((status, page))
        },
    )
    .await;
    assert_eq!(all["nextCursor"], Value::Null, "{all}");
    assert_eq!(all["messages"][0]["batchId"], json!(batch));

    // Pages of two, by cursor.
    let (status, first) = get(app, "/api/v1/messages?limit=2", KEY).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first), newest_first[..2]);
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a cursor after a full page");
    let (status, second) = get(
        app,
        &format!("/api/v1/messages?limit=2&cursor={cursor}"),
        KEY,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(ids(&second), newest_first[2..]);
    assert_eq!(second["nextCursor"], Value::Null);
    // A page that ends exactly at the last message says so.
    let (_, exact) = get(app, "/api/v1/messages?limit=3", KEY).await;
    assert_eq!(
        (ids(&exact).len(), &exact["nextCursor"]),
        (3, &Value::Null),
        "{exact}"
    );

    // A cursor with other filters, or from another key: 400 naming cursor.
    let (status, problem) = get(
        app,
        &format!("/api/v1/messages?limit=2&channel=sms&cursor={cursor}"),
        KEY,
    )
    .await;
    assert_eq!(
        (status, fields(&problem)),
        (400, vec!["cursor"]),
        "{problem}"
    );
    let (status, problem) = get(
        app,
        &format!("/api/v1/messages?limit=2&cursor={cursor}"),
        OTHER_KEY,
    )
    .await;
    assert_eq!(
        (status, fields(&problem)),
        (400, vec!["cursor"]),
        "{problem}"
    );

    // Filters.
    let encoded = NUMBERS[1].replace('+', "%2B");
    let (_, by_to) = get(app, &format!("/api/v1/messages?to={encoded}"), KEY).await;
    assert_eq!(ids(&by_to), [sent[1].clone()]);
    let (_, by_batch) = get(app, &format!("/api/v1/messages?batchId={batch}"), KEY).await;
    assert_eq!(ids(&by_batch), [sent[2].clone()]);
    let (_, none) = get(app, "/api/v1/messages?status=delivered", KEY).await;
    assert_eq!(ids(&none), Vec::<String>::new());
    let (_, submitted) = get(
        app,
        "/api/v1/messages?status=submitted&channel=whatsapp",
        KEY,
    )
    .await;
    assert_eq!(ids(&submitted), newest_first);
    let (_, future) = get(app, "/api/v1/messages?since=2999-01-01T00:00:00Z", KEY).await;
    assert_eq!(ids(&future), Vec::<String>::new());

    // Another key sees none of them.
    let (status, other) = get(app, "/api/v1/messages", OTHER_KEY).await;
    assert_eq!((status, ids(&other)), (200, vec![]), "{other}");

    // Careless input: each bad parameter named.
    let (status, problem) = get(
        app,
        "/api/v1/messages?limit=0&status=lost&to=123&since=soon&cursor=%00",
        KEY,
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let mut named = fields(&problem);
    named.sort_unstable();
    assert_eq!(
        named,
        ["cursor", "limit", "since", "status", "to"],
        "{problem}"
    );
    let (status, problem) = get(app, "/api/v1/messages?limit=1001", KEY).await;
    assert_eq!(
        (status, fields(&problem)),
        (400, vec!["limit"]),
        "{problem}"
    );
}

/// The counters over the same three messages.
async fn stats_contract(app: &TestApp) {
    let stats = eventually(
        "three counted as submitted",
        std::time::Duration::from_secs(15),
        async || {
            let (status, stats) = get(app, "/api/v1/stats?granularity=minute", KEY).await;
            (status == 200 && stats["byStatus"]["submitted"] == 3).then_some(stats)
        },
    )
    .await;
    assert_eq!(
        stats["byStatus"]["accepted"], 0,
        "moved, not added: {stats}"
    );
    assert_eq!(
        stats["byChannel"],
        json!({"whatsapp": 3, "sms": 0}),
        "{stats}"
    );
    assert_eq!(stats["smsSegments"], 0);
    let series = stats["series"].as_array().unwrap();
    assert!(
        (1440..=1441).contains(&series.len()),
        "a day of minutes: {}",
        series.len()
    );
    let counted: i64 = series
        .iter()
        .filter_map(|b| b["byStatus"]["submitted"].as_i64())
        .sum();
    assert_eq!(counted, 3);
    // A series whose first bucket starts before `since` counts from `since`.
    let since = (chrono::Utc::now() - chrono::Duration::minutes(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, daily) = get(
        app,
        &format!("/api/v1/stats?granularity=day&since={since}"),
        KEY,
    )
    .await;
    assert_eq!(daily["byStatus"]["submitted"], 3, "{daily}");
    assert_eq!(daily["series"][0]["byStatus"]["submitted"], 3, "{daily}");
    let (_, sms) = get(app, "/api/v1/stats?channel=sms", KEY).await;
    assert_eq!(sms["byStatus"]["submitted"], 0, "{sms}");
    let (_, other) = get(app, "/api/v1/stats", OTHER_KEY).await;
    assert_eq!(other["byStatus"]["submitted"], 0, "{other}");
    let (status, problem) = get(app, "/api/v1/stats?granularity=week&since=x", KEY).await;
    assert_eq!(status, 400, "{problem}");
    let mut named = fields(&problem);
    named.sort_unstable();
    assert_eq!(named, ["granularity", "since"]);
}

#[tokio::test]
async fn search_and_stats_on_the_embedded_default() {
    let whatsapp = whatsapp_accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&whatsapp.vars())).await;
    search_contract(&app).await;
    stats_contract(&app).await;
}

#[tokio::test]
async fn search_and_stats_with_sns_and_dynamodb() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let gateway = TestApp::spawn_from_config(&config_with(&stack.vars())).await;
    let whatsapp = whatsapp_accepting().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = crate::helpers::process::consumer(
        &stack.tq.queue_url,
        &stack.table,
        &whatsapp.vars(),
        &log,
    );
    search_contract(&gateway).await;
    stats_contract(&gateway).await;
    child.kill();
}

/// Twelve messages of one key in one minute, each written by racing writers
/// in shuffled order with repeats (as retries and Meta's resends come): the
/// counters, moved by conditional transactions on shared items, end with
/// each message counted once, under the status it ended in.
#[tokio::test]
async fn racing_writers_count_each_message_once_in_dynamodb() {
    use herald::search::{Counts, Owner, SearchStore, StatsQuery, minute_of};
    use herald::status::{Entry, MessageInfo, Status, StatusStore, Update};
    use std::time::Duration;

    let aws = crate::helpers::aws::emulator().await;
    let table = aws.status_table().await;
    let store = herald::status::dynamodb::DynamoStatusStore::new(
        aws.dynamodb.clone(),
        &table,
        Duration::from_secs(86_400),
        None,
    );
    let accepted_at_ms = 1_750_000_020_000;
    let mut updates = Vec::new();
    for m in 0..12 {
        let info = MessageInfo {
            id: uuid::Uuid::now_v7().to_string(),
            api_key_id: "ops".into(),
            tenant: "default".into(),
            channel: "whatsapp".into(),
            to: NUMBERS[0].into(),
            callback_data: None,
            accepted_at_ms,
            fallback: None,
            scheduled_for_ms: None,
            batch_id: None,
            from: None,
            sms_segments: 0,
        };
        let pid = format!("wamid.COUNT{m}");
        let at = |s: i64| Entry::on("whatsapp", accepted_at_ms + s);
        updates.push(Update::Message {
            info: info.clone(),
            status: Status::Accepted,
            entry: at(0),
            provider_message_id: None,
        });
        updates.push(Update::Message {
            info,
            status: Status::Submitted,
            entry: at(1).by_attempt(1),
            provider_message_id: Some(pid.clone()),
        });
        for (status, s) in [(Status::Sent, 2), (Status::Delivered, 3), (Status::Read, 4)] {
            for _ in 0..2 {
                updates.push(Update::Provider {
                    provider_message_id: pid.clone(),
                    status,
                    entry: at(s),
                });
            }
        }
    }
    fastrand::shuffle(&mut updates);
    let writers: Vec<_> = updates
        .into_iter()
        .map(|u| {
            let store = store.clone();
            tokio::spawn(async move {
                eventually("the update recorded", Duration::from_secs(30), || {
                    let (store, u) = (store.clone(), u.clone());
                    async move { store.record(vec![u], Vec::new()).await.ok() }
                })
                .await;
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let query = StatsQuery {
        owner: Owner {
            tenant: "default".into(),
            api_key_id: Some("ops".into()),
        },
        since_ms: minute_of(accepted_at_ms),
        until_ms: minute_of(accepted_at_ms) + 60_000,
        channel: None,
        bucket_ms: None,
    };
    let buckets = SearchStore::counts(&store, &query).await.unwrap();
    let body = Counts::sum(&query, &buckets).to_json();
    assert_eq!(body["byStatus"]["read"], 12, "{body}");
    let total: i64 = body["byStatus"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, 12, "each message once: {body}");
}
