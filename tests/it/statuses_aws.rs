//! Statuses and events in SNS mode, against moto: gateway → SNS → SQS →
//! poller → fake Graph API, statuses in a DynamoDB table, Meta's signed
//! reports, and events published to an SNS topic read back from a subscribed
//! queue, field by field and attribute by attribute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use herald::consumer::sqs_poller::SqsPoller;
use herald::events::sns::SnsEvents;
use herald::status::dynamodb::DynamoStatusStore;
use herald::status::{Entry, Status, StatusStore, Update};
use serde_json::{Value, json};

use crate::helpers::aws::{Emulator, emulator, poll_until_status};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::whatsapp::{FakeWhatsApp, send_endpoint, success};
use crate::helpers::{
    KEY, OTHER_KEY, TO, TestApp, TestRouter, config_with, eventually, history_statuses,
};

struct Setup {
    aws: Emulator,
    table: String,
    events_queue: String,
    gateway: TestApp,
    gateway_topic: String,
    queue_url: String,
    poller: SqsPoller,
    store: DynamoStatusStore,
    fake: FakeWhatsApp,
}

async fn setup(wamid: &str) -> Setup {
    let aws = emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let table = aws.status_table().await;
    let (events_topic, events_queue) = aws.events_topic().await;
    let mut vars = vec![
        ("SNS_TOPIC_ARN", tq.topic_arn.as_str()),
        ("STATUS_TABLE", table.as_str()),
        ("EVENTS_TOPIC_ARN", events_topic.as_str()),
    ];
    vars.extend(meta::webhook_vars());
    let gateway = TestApp::spawn_from_config(&config_with(&vars)).await;
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", wamid))
        .mount(&fake.server)
        .await;
    let store = DynamoStatusStore::new(
        aws.dynamodb.clone(),
        &table,
        Duration::from_secs(30 * 86_400),
        Some(SnsEvents::new(aws.sns.clone(), &events_topic)),
    );
    let pipeline = fake
        .pipeline(Duration::from_secs(5))
        .with_statuses(Arc::new(store.clone()));
    let poller = SqsPoller::new(aws.sqs.clone(), &tq.queue_url, Arc::new(pipeline)).await;
    Setup {
        aws,
        table,
        events_queue,
        gateway,
        gateway_topic: tq.topic_arn.clone(),
        queue_url: tq.queue_url.clone(),
        poller,
        store,
        fake,
    }
}

/// Events read from the subscribed queue: (body, attributes).
async fn events(
    aws: &Emulator,
    queue: &str,
    expected: usize,
    within: Duration,
) -> Vec<(Value, HashMap<String, String>)> {
    aws.drain(queue, expected, within)
        .await
        .into_iter()
        .map(|m| {
            let attributes = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                .collect();
            (
                serde_json::from_str(m.body.as_deref().unwrap()).unwrap(),
                attributes,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_send_its_early_report_and_later_reports_end_in_dynamodb_and_on_the_events_topic() {
    let s = setup("wamid.AWS1").await;
    let response = s
        .gateway
        .post_message(&json!({"to": TO, "text": {"body": "hello"}, "callbackData": "order-42"}))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    // The gateway records `accepted` after the 202, off its path.
    s.gateway.wait_for_status(&id, "accepted").await;

    // Meta's `delivered` comes before the consumer has recorded the send.
    let sender = MetaSender::new(&s.gateway.address);
    let delivered = meta::status("wamid.AWS1", "delivered", 1_750_000_002);
    assert_eq!(
        sender.post(&meta::payload(vec![delivered], vec![])).await,
        200
    );
    assert_eq!(
        s.gateway
            .message_status(&id, KEY)
            .await
            .json::<Value>()
            .await
            .unwrap()["status"],
        "accepted"
    );

    // The poller delivers: submitted, and the early report merged.
    poll_until_status(&s.poller, &s.gateway, &id, "delivered").await;
    // Then `read` twice and a stale `sent`, shuffled.
    let later = [
        meta::status("wamid.AWS1", "read", 1_750_000_003),
        meta::status("wamid.AWS1", "sent", 1_750_000_001),
    ];
    sender.post_shuffled_twice(&later, 3).await;
    let view = s.gateway.wait_for_status(&id, "read").await;
    assert_eq!(
        history_statuses(&view),
        ["accepted", "submitted", "sent", "delivered", "read"]
    );
    assert_eq!(view["providerMessageId"], "wamid.AWS1");
    assert_eq!(view["callbackData"], "order-42");
    assert_eq!(view["history"][1]["attempt"], 1);

    // Another key, and an unknown id: the same 404.
    assert_eq!(s.gateway.message_status(&id, OTHER_KEY).await.status(), 404);

    // Events: submitted, delivered, read — one each — with their attributes.
    let received = events(&s.aws, &s.events_queue, 3, Duration::from_secs(15)).await;
    let extra = events(&s.aws, &s.events_queue, 1, Duration::from_secs(2)).await;
    assert!(extra.is_empty(), "a duplicate event: {extra:?}");
    let mut statuses: Vec<&str> = received
        .iter()
        .map(|(e, _)| e["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["delivered", "read", "submitted"]);
    for (event, attributes) in &received {
        assert_eq!(event["type"], "message.status");
        assert_eq!(event["messageId"], id.as_str());
        assert_eq!(event["to"], TO);
        assert_eq!(event["callbackData"], "order-42");
        assert_eq!(event["providerMessageId"], "wamid.AWS1");
        assert_eq!(event["version"], 1);
        assert_eq!(attributes["type"], "message.status");
        assert_eq!(attributes["channel"], "whatsapp");
        assert_eq!(attributes["status"], event["status"].as_str().unwrap());
    }

    // The item expires through DynamoDB's TTL, STATUS_TTL_DAYS from now.
    let item = s
        .aws
        .dynamodb
        .get_item()
        .table_name(&s.table)
        .key("pk", AttributeValue::S(format!("msg#{id}")))
        .key("sk", AttributeValue::S("status".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
    let in_days = (expires - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
    assert!((29.9..=30.1).contains(&in_days), "{in_days}");
}

#[tokio::test]
async fn inbound_messages_are_published_once_with_their_attributes() {
    let s = setup("wamid.unused").await;
    let sender = MetaSender::new(&s.gateway.address);
    let messages = meta::every_inbound_type();
    assert_eq!(
        sender.post(&meta::payload(vec![], messages.clone())).await,
        200
    );
    assert_eq!(
        sender
            .post(&meta::payload(vec![], messages[..3].to_vec()))
            .await,
        200
    );
    let received = events(
        &s.aws,
        &s.events_queue,
        messages.len(),
        Duration::from_secs(15),
    )
    .await;
    let extra = events(&s.aws, &s.events_queue, 1, Duration::from_secs(2)).await;
    assert!(extra.is_empty(), "a duplicate event: {extra:?}");
    assert_eq!(
        received.len(),
        messages.len(),
        "one event per inbound message"
    );
    for (event, attributes) in &received {
        assert_eq!(event["type"], "message.inbound");
        assert_eq!(event["from"], "+16505551234");
        assert_eq!(attributes["type"], "message.inbound");
        assert_eq!(attributes["channel"], "whatsapp");
        assert!(!attributes.contains_key("status"));
    }
}

/// Many writers at once — the gateway, consumers, webhook handlers — in every
/// order: the conditional writes merge to the same end, and each status is
/// published at most once.
#[tokio::test]
async fn concurrent_writers_merge_without_locks() {
    let s = setup("wamid.unused").await;
    let info = herald::status::MessageInfo {
        id: uuid::Uuid::now_v7().to_string(),
        api_key_id: "ops".into(),
        tenant: "default".into(),
        channel: "whatsapp".into(),
        to: TO.into(),
        callback_data: None,
        accepted_at_ms: 1_750_000_000_000,
        fallback: None,
        scheduled_for_ms: None,
        batch_id: None,
        from: None,
        sms_segments: 0,
    };
    let entry = |at_ms: i64| Entry {
        at_ms,
        channel: Some("whatsapp".into()),
        attempt: None,
        provider_status: None,
        error: None,
    };
    let mut updates = vec![
        Update::Message {
            info: info.clone(),
            status: Status::Accepted,
            entry: entry(1),
            provider_message_id: None,
        },
        Update::Message {
            info: info.clone(),
            status: Status::Submitted,
            entry: entry(2),
            provider_message_id: Some("wamid.RACE".into()),
        },
    ];
    for (status, at) in [
        (Status::Sent, 3),
        (Status::Delivered, 4),
        (Status::Failed, 5),
    ] {
        for _ in 0..3 {
            updates.push(Update::Provider {
                provider_message_id: "wamid.RACE".into(),
                status,
                entry: entry(at),
            });
        }
    }
    fastrand::shuffle(&mut updates);
    // Each writer retries a failure as its source would (Meta resends a
    // webhook answered 503; SQS redelivers): a writer that finds an event
    // being published by another is refused until that one is done.
    let writers = updates.into_iter().map(|u| {
        let store = s.store.clone();
        tokio::spawn(async move {
            // A plain closure: its futures own what they use, so this task is `Send`.
            eventually("the update recorded", Duration::from_secs(20), || {
                let (store, u) = (store.clone(), u.clone());
                async move { store.record(vec![u], Vec::new()).await.ok() }
            })
            .await;
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    let record = s.store.get(&info.id, &key("ops")).await.unwrap().unwrap();
    assert_eq!(record.status(), Some(Status::Delivered));
    assert_eq!(record.history.len(), 5, "{:?}", record.history);
    assert!(
        s.store
            .get(&info.id, &key("billing"))
            .await
            .unwrap()
            .is_none()
    );

    // Racing writers publish each status's event once (a conditional claim
    // per status; before: copies, and a second `submitted`).
    let received = events(&s.aws, &s.events_queue, 10, Duration::from_secs(3)).await;
    let mut statuses: Vec<&str> = received
        .iter()
        .map(|(e, _)| e["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    let all = statuses.len();
    statuses.dedup();
    assert_eq!(
        all,
        statuses.len(),
        "a status published twice: {received:?}"
    );
    assert!(statuses.contains(&"delivered"));
}

/// One webhook carrying the same inbound message twice, and two deliveries
/// of it at once: one `message.inbound` event (a conditional claim, not a
/// read-then-write race; before: two events in SNS mode).
#[tokio::test]
async fn an_inbound_message_sent_twice_at_once_is_published_once() {
    let s = setup("wamid.unused").await;
    let sender = MetaSender::new(&s.gateway.address);
    let message = meta::every_inbound_type().remove(0);
    let payload = meta::payload(vec![], vec![message.clone(), message]);
    assert_eq!(sender.post(&payload).await, 200);
    let other = meta::every_inbound_type().remove(1);
    let twice = meta::payload(vec![], vec![other]);
    let (a, b) = tokio::join!(sender.post(&twice), sender.post(&twice));
    // A delivery that found the other one publishing is refused (503) and,
    // as Meta does, sent again.
    for status in [a, b] {
        if status != 200 {
            eventually("the retry accepted", Duration::from_secs(20), async || {
                (sender.post(&twice).await == 200).then_some(())
            })
            .await;
        }
    }
    let received = events(&s.aws, &s.events_queue, 2, Duration::from_secs(15)).await;
    let extra = events(&s.aws, &s.events_queue, 1, Duration::from_secs(2)).await;
    assert!(extra.is_empty(), "a duplicate event: {extra:?}");
    assert_eq!(received.len(), 2);
}

#[tokio::test]
async fn without_a_status_table_the_message_route_says_it_is_not_configured() {
    let router = TestRouter::new();
    let response = router
        .call(
            axum::http::Request::get("/api/v1/messages/0193e3a0-0000-7000-8000-000000000000")
                .header("x-api-key", KEY)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let problem = response.assert_problem(501);
    assert_eq!(problem["code"], "status-store-not-configured");
}

/// The status store, with writes that fail while `failing` is set (DynamoDB
/// throttled or unreachable for longer than the consumer's retries).
#[derive(Debug)]
struct FailingWrites {
    inner: DynamoStatusStore,
    failing: std::sync::atomic::AtomicBool,
}

impl StatusStore for FailingWrites {
    fn record(
        &self,
        updates: Vec<Update>,
        inbound: Vec<herald::status::Inbound>,
    ) -> herald::status::BoxFuture<'_, Result<(), herald::status::StoreError>> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(herald::status::StoreError::new("throttled (test)")) });
        }
        self.inner.record(updates, inbound)
    }
    fn get<'a>(
        &'a self,
        id: &'a str,
        scope: &'a herald::status::Scope,
    ) -> herald::status::BoxFuture<
        'a,
        Result<Option<herald::status::MessageRecord>, herald::status::StoreError>,
    > {
        self.inner.get(id, scope)
    }
    fn cancel<'a>(
        &'a self,
        ids: &'a [String],
        scope: &'a herald::status::Scope,
        batch: Option<&'a str>,
    ) -> herald::status::BoxFuture<
        'a,
        Result<Vec<herald::status::Cancellation>, herald::status::StoreError>,
    > {
        self.inner.cancel(ids, scope, batch)
    }
    fn hand<'a>(
        &'a self,
        envelope: &'a herald::contract::Envelope,
    ) -> herald::status::BoxFuture<'a, Result<bool, herald::status::StoreError>> {
        self.inner.hand(envelope)
    }
}

impl herald::status::WindowStore for FailingWrites {
    fn window<'a>(
        &'a self,
        number_id: &'a str,
        person: &'a str,
    ) -> herald::status::BoxFuture<'a, Result<herald::window::Window, herald::status::StoreError>>
    {
        self.inner.window(number_id, person)
    }
    fn close_windows(
        &self,
        closures: Vec<herald::window::Closure>,
    ) -> herald::status::BoxFuture<'_, Result<(), herald::status::StoreError>> {
        self.inner.close_windows(closures)
    }
    fn received<'a>(
        &'a self,
        provider_message_id: &'a str,
    ) -> herald::status::BoxFuture<
        'a,
        Result<Option<herald::window::Received>, herald::status::StoreError>,
    > {
        self.inner.received(provider_message_id)
    }
}

impl herald::templates::store::TemplateStore for FailingWrites {
    fn templates<'a>(
        &'a self,
        waba_id: &'a str,
    ) -> herald::status::BoxFuture<
        'a,
        Result<herald::templates::store::Stored, herald::status::StoreError>,
    > {
        self.inner.templates(waba_id)
    }
    fn replace_templates<'a>(
        &'a self,
        waba_id: &'a str,
        listing: herald::templates::Listing,
    ) -> herald::status::BoxFuture<'a, Result<(), herald::status::StoreError>> {
        self.inner.replace_templates(waba_id, listing)
    }
    fn change_template_status(
        &self,
        change: herald::templates::StatusChange,
    ) -> herald::status::BoxFuture<'_, Result<(), herald::status::StoreError>> {
        self.inner.change_template_status(change)
    }
}

impl herald::status::OptOutStore for FailingWrites {
    fn opt_out<'a>(
        &'a self,
        tenant: &'a str,
        number: &'a str,
    ) -> herald::status::BoxFuture<
        'a,
        Result<Option<herald::optout::OptOut>, herald::status::StoreError>,
    > {
        self.inner.opt_out(tenant, number)
    }
    fn change_opt_outs(
        &self,
        updates: Vec<herald::optout::OptOutUpdate>,
    ) -> herald::status::BoxFuture<'_, Result<(), herald::status::StoreError>> {
        self.inner.change_opt_outs(updates)
    }
}

/// The consumer sent the message but the table would not take its
/// `submitted` for longer than its retries: the status travels again through
/// the topic and is recorded (with its event) when it comes back, and the
/// message is not sent twice. (Before: given up after about a second, the
/// SQS message acknowledged, the status and its event lost.)
#[tokio::test]
async fn a_status_the_table_would_not_take_is_recorded_later_without_a_second_send() {
    let s = setup("wamid.LATE").await;
    let tq_topic = s.gateway_topic.clone();
    let store = Arc::new(FailingWrites {
        inner: s.store.clone(),
        failing: true.into(),
    });
    let outbox = herald::publisher::SnsPublisher::with_sdk(
        s.aws.sns.clone(),
        &tq_topic,
        Duration::from_millis(1),
    );
    let pipeline = s
        .fake
        .pipeline(Duration::from_secs(5))
        .with_statuses(store.clone())
        .with_status_outbox(Arc::new(outbox));
    let poller = SqsPoller::new(s.aws.sqs.clone(), &s.queue_url, Arc::new(pipeline)).await;

    let response = s
        .gateway
        .post_message(&json!({"to": TO, "message": "late status"}))
        .await;
    let id = response.json::<Value>().await.unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let sends = || async {
        s.fake
            .server
            .received_requests()
            .await
            .unwrap_or_default()
            .len()
    };
    eventually("the message sent", Duration::from_secs(20), async || {
        poller.poll_once(Duration::from_secs(1)).await.unwrap();
        (sends().await > 0).then_some(())
    })
    .await;
    // The table is back; the record that travelled again is recorded.
    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let view = poll_until_status(&poller, &s.gateway, &id, "submitted").await;
    assert_eq!(view["providerMessageId"], "wamid.LATE");
    assert_eq!(sends().await, 1, "the message was sent once");
    let received = events(&s.aws, &s.events_queue, 1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0["status"], "submitted");
}

/// The failover is once-only work with a lease: a claim another writer holds
/// now refuses the report (its source retries), and a claim abandoned by a
/// writer that died (older than the lease) is taken over, so the fallback is
/// sent. (Before: `failoverAt` was claimed before the publish and never
/// released when the publish did not happen: no SMS, ever.)
#[tokio::test]
async fn an_abandoned_failover_claim_is_taken_over_and_a_live_one_is_not() {
    use herald::contract::{Channel, FallbackLeg};
    let aws = emulator().await;
    let table = aws.status_table().await;
    let published = Arc::new(herald::publisher::RecordingPublisher::new());
    let store = DynamoStatusStore::new(
        aws.dynamodb.clone(),
        &table,
        Duration::from_secs(86_400),
        None,
    )
    .with_failover(published.clone());
    let send = |id: &str, wamid: &str| Update::Message {
        info: herald::status::MessageInfo {
            id: id.to_owned(),
            api_key_id: "ops".into(),
            tenant: "default".into(),
            channel: "whatsapp".into(),
            to: TO.into(),
            callback_data: None,
            accepted_at_ms: 1_750_000_000_000,
            fallback: Some(FallbackLeg {
                channel: Channel::Sms,
                message: json!({"type": "text", "text": {"body": "by SMS"}}),
                expires_at: None,
            }),
            scheduled_for_ms: None,
            batch_id: None,
            from: None,
            sms_segments: 0,
        },
        status: Status::Submitted,
        entry: Entry::on("whatsapp", 1_750_000_001_000).by_attempt(1),
        provider_message_id: Some(wamid.to_owned()),
    };
    let unreachable = |wamid: &str| Update::Provider {
        provider_message_id: wamid.to_owned(),
        status: Status::Failed,
        entry: Entry {
            at_ms: 1_750_000_002_000,
            channel: Some("whatsapp".into()),
            attempt: None,
            provider_status: Some("failed".into()),
            error: Some(herald::status::StatusError {
                code: Some(131_026.into()),
                title: "Message undeliverable".into(),
                channel: "whatsapp".into(),
                class: Some(herald::status::FailureMark::Unreachable),
            }),
        },
    };
    let claim = |id: String, age_ms: i64| {
        let dynamodb = aws.dynamodb.clone();
        let table = table.clone();
        async move {
            let at = chrono::Utc::now().timestamp_millis() - age_ms;
            dynamodb
                .update_item()
                .table_name(&table)
                .key("pk", AttributeValue::S(format!("msg#{id}")))
                .key("sk", AttributeValue::S("status".into()))
                .update_expression("SET failover = :c")
                .expression_attribute_values(":c", AttributeValue::S(format!("claimed:{at:013}")))
                .send()
                .await
                .unwrap();
        }
    };
    // Held now by another writer: refused, nothing sent.
    let live = uuid::Uuid::now_v7().to_string();
    store
        .record(vec![send(&live, "wamid.LIVE")], vec![])
        .await
        .unwrap();
    claim(live.clone(), 1_000).await;
    assert!(
        store
            .record(vec![unreachable("wamid.LIVE")], vec![])
            .await
            .is_err()
    );
    assert!(published.published().is_empty());
    // Abandoned 11 minutes ago (the lease is 10): taken over, sent once.
    let stale = uuid::Uuid::now_v7().to_string();
    store
        .record(vec![send(&stale, "wamid.STALE")], vec![])
        .await
        .unwrap();
    claim(stale.clone(), 11 * 60_000).await;
    store
        .record(vec![unreachable("wamid.STALE")], vec![])
        .await
        .unwrap();
    store
        .record(vec![unreachable("wamid.STALE")], vec![])
        .await
        .unwrap();
    let sent = published.published();
    assert_eq!(sent.len(), 1, "one SMS leg");
    assert_eq!(sent[0].id.to_string(), stale);
    assert_eq!(sent[0].channel, Channel::Sms);
}

fn key(id: &str) -> herald::status::Scope {
    herald::status::Scope::Key(id.to_owned())
}
