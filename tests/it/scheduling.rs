//! Scheduled sends (`sendAt`, `quietHours`) and cancellation, on the
//! embedded default and through SNS with the schedule in `STATUS_TABLE`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};

use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, OTHER_KEY, TO, TestApp, config_with, eventually, pairs};

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse(at: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(at.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The time of the first history entry of `status` in `view`.
fn reached(view: &Value, status: &str) -> DateTime<Utc> {
    let entry = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["status"] == status)
        .unwrap_or_else(|| panic!("no {status} in {view}"));
    parse(&entry["at"])
}

async fn whatsapp_accepting() -> FakeWhatsApp {
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.SCHED"))
        .mount(&whatsapp.server)
        .await;
    whatsapp
}

/// Polls the fake until it has a request, failing if one came before
/// `not_before`; returns when it was first seen.
async fn first_request_at(whatsapp: &FakeWhatsApp, not_before: DateTime<Utc>) -> DateTime<Utc> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let checked_at = Utc::now();
        if !whatsapp.bodies().await.is_empty() {
            assert!(
                checked_at >= not_before,
                "sent at {checked_at} or before, due {not_before}"
            );
            return checked_at;
        }
        assert!(Instant::now() < deadline, "nothing sent within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_scheduled_message_goes_at_its_time_not_before_and_not_much_after() {
    let whatsapp = whatsapp_accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&whatsapp.vars())).await;
    let due = DateTime::from_timestamp_millis(Utc::now().timestamp_millis() + 2500).unwrap();
    let (status, answer) = app
        .send(&json!({"to": TO, "message": "sale at nine", "sendAt": rfc3339(due)}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(parse(&answer["sendAt"]), due, "{answer}");
    assert_eq!(parse(&answer["scheduledFor"]), due, "{answer}");
    let id = answer["messageId"].as_str().unwrap();
    let waiting = app.view(id).await.expect("readable while it waits");
    assert_eq!(waiting["status"], "accepted");
    assert_eq!(parse(&waiting["scheduledFor"]), due);
    let health = app.get("/health").await.json::<Value>().await.unwrap();
    assert_eq!(
        health["checks"]["queue"]["detail"]["scheduledWaiting"], 1,
        "{health}"
    );

    let seen = first_request_at(&whatsapp, due).await;
    assert!(
        seen - due < chrono::Duration::milliseconds(1500),
        "seen {seen}, due {due}"
    );
    let view = app.wait_for_status(id, "submitted").await;
    let submitted = reached(&view, "submitted");
    assert!(submitted >= due, "{view}");
    assert!(submitted - due <= chrono::Duration::seconds(1), "{view}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("herald_schedule_lateness_seconds_count 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_past_send_at_is_now_and_bad_schedules_name_their_field() {
    let whatsapp = whatsapp_accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&whatsapp.vars())).await;
    let (status, answer) = app
        .send(&json!({"to": TO, "message": "hi", "sendAt": "2020-01-01T00:00:00+01:00"}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer.get("scheduledFor").is_none(), "{answer}");
    app.wait_for_status(answer["messageId"].as_str().unwrap(), "submitted")
        .await;

    let far = rfc3339(Utc::now() + chrono::Duration::days(36));
    let soon = rfc3339(Utc::now() + chrono::Duration::hours(1));
    for (body, field) in [
        (json!({"to": TO, "message": "hi", "sendAt": far}), "sendAt"),
        (
            json!({"to": TO, "message": "hi", "sendAt": "2026-12-04T09:00:00"}),
            "sendAt",
        ),
        (
            json!({"to": TO, "message": "hi", "sendAt": 1_700_000_000}),
            "sendAt",
        ),
        (
            json!({"to": TO, "message": "hi", "sendAt": soon,
                "expiresAt": rfc3339(Utc::now() + chrono::Duration::minutes(30))}),
            "expiresAt",
        ),
        (
            json!({"to": TO, "message": "hi",
                "quietHours": {"from": "21:00", "to": "8:00", "timeZone": "Europe/Madrid"}}),
            "quietHours.to",
        ),
        (
            json!({"to": TO, "message": "hi",
                "quietHours": {"from": "21:00", "to": "08:00", "timeZone": "Mars/Olympus"}}),
            "quietHours.timeZone",
        ),
    ] {
        let (status, answer) = app.send(&body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["errors"][0]["field"], field, "{body}: {answer}");
    }
}

/// Quiet hours in `zone` around now: from the minute before to two minutes
/// after, as `HH:MM`; with the instant they end.
fn quiet_around_now(zone: chrono_tz::Tz) -> (Value, DateTime<Utc>) {
    let local = Utc::now().with_timezone(&zone);
    let minute = |delta: i64| local + chrono::Duration::minutes(delta);
    let hhmm = |t: DateTime<chrono_tz::Tz>| format!("{:02}:{:02}", t.hour(), t.minute());
    let end = minute(2)
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let quiet = json!({"from": hhmm(minute(-1)), "to": hhmm(end), "timeZone": zone.name()});
    (quiet, end.with_timezone(&Utc))
}

#[tokio::test]
async fn quiet_hours_hold_a_message_until_they_end_and_let_others_through() {
    let whatsapp = whatsapp_accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&whatsapp.vars())).await;

    // Inside the hours, in a named zone: held until they end.
    let (quiet, end) = quiet_around_now(chrono_tz::Tz::Asia__Tokyo);
    let (status, answer) = app
        .send(&json!({"to": TO, "message": "hi", "quietHours": quiet}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(parse(&answer["scheduledFor"]), end, "{quiet}: {answer}");
    assert!(answer.get("sendAt").is_none());

    // In the recipient's zone: a Tokyo number is inside them, a Madrid one
    // (nine or eight hours behind) is not.
    let mut recipient = quiet.clone();
    recipient["timeZone"] = json!("recipient");
    let (_, tokyo) = app
        .send(&json!({"to": "+81312345678", "message": "hi", "quietHours": recipient}))
        .await;
    assert_eq!(parse(&tokyo["scheduledFor"]), end, "{tokyo}");
    let madrid = app
        .send_accepted(&json!({"to": "+34612345678", "message": "hi", "quietHours": recipient}))
        .await;
    app.wait_for_status(&madrid, "submitted").await;
    let bodies = whatsapp.bodies().await;
    assert_eq!(
        bodies.len(),
        1,
        "only the message outside its quiet hours went"
    );
    assert_eq!(bodies[0]["to"], "34612345678");
}

#[tokio::test]
async fn a_tenants_quiet_hours_apply_to_its_sends_that_name_none() {
    let (quiet, end) = quiet_around_now(chrono_tz::Tz::UTC);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(
        &file,
        format!(
            "[[tenant]]\nid = \"quiet\"\nkeys = [\"ops\"]\nquiet_hours = {{ from = {}, to = {}, time_zone = \"UTC\" }}\n\n[[tenant]]\nid = \"loud\"\nkeys = [\"billing\"]\n",
            quiet["from"], quiet["to"]
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let whatsapp = whatsapp_accepting().await;
    let mut vars = whatsapp.vars();
    vars.push(("TENANTS_FILE", file.to_str().unwrap().to_owned()));
    let app = TestApp::spawn_embedded(&data, &pairs(&vars)).await;
    let (_, held) = app.send(&json!({"to": TO, "message": "hi"})).await;
    assert!(held["scheduledFor"].is_string(), "{held}");
    assert_eq!(parse(&held["scheduledFor"]), end, "{held}");
    // Its own quietHours replace the tenant's.
    let (_, own) = app
        .send(&json!({"to": TO, "message": "hi",
            "quietHours": {"from": "00:00", "to": "00:01", "timeZone": "Pacific/Kiritimati"}}))
        .await;
    let other = Utc::now().with_timezone(&chrono_tz::Tz::Pacific__Kiritimati);
    if (other.hour(), other.minute()) != (0, 0) {
        assert!(own.get("scheduledFor").is_none(), "{own}");
    }
    let loud = app
        .client
        .post(format!("{}/api/v1/send", app.address))
        .header("x-api-key", OTHER_KEY)
        .json(&json!({"to": TO, "message": "hi"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(
        loud.get("scheduledFor").is_none(),
        "another tenant's: {loud}"
    );
}

#[tokio::test]
async fn a_message_is_cancelled_before_it_is_sent_and_not_after() {
    let whatsapp = whatsapp_accepting().await;
    let receiver = crate::helpers::event_receiver::EventReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars = whatsapp.vars();
    vars.push(("EVENTS_WEBHOOK_URL", receiver.url.clone()));
    vars.push((
        "EVENTS_WEBHOOK_SECRET",
        crate::helpers::event_receiver::SECRET.to_owned(),
    ));
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&vars)).await;
    let due = rfc3339(Utc::now() + chrono::Duration::hours(1));
    let id = app
        .send_accepted(&json!({"to": TO, "message": "reminder", "sendAt": due}))
        .await;
    let path = format!("/api/v1/messages/{id}");
    // Another key's message is not found, and stays.
    assert_eq!(app.delete(&path, OTHER_KEY).await.0, 404);
    let (status, view) = app.delete(&path, KEY).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "cancelled", "{view}");
    let (again, view) = app.delete(&path, KEY).await;
    assert_eq!(
        (again, &view["status"]),
        (200, &json!("cancelled")),
        "idempotent"
    );
    let events = receiver
        .wait_for(Duration::from_secs(10), |e| {
            e.iter()
                .any(|e| e["messageId"] == id && e["status"] == "cancelled")
        })
        .await;
    assert!(events.iter().any(|e| e["type"] == "message.status"));
    // Nothing is left to send.
    let health = app.get("/health").await.json::<Value>().await.unwrap();
    assert_eq!(health["checks"]["queue"]["detail"]["depth"], 0, "{health}");

    let sent = app
        .send_accepted(&json!({"to": TO, "message": "now"}))
        .await;
    app.wait_for_status(&sent, "submitted").await;
    let (status, problem) = app.delete(&format!("/api/v1/messages/{sent}"), KEY).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "already-sent");
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        app.delete(&format!("/api/v1/messages/{unknown}"), KEY)
            .await
            .0,
        404
    );
    assert_eq!(app.delete("/api/v1/messages/not-an-id", KEY).await.0, 404);
    assert_eq!(whatsapp.bodies().await.len(), 1, "only the second was sent");
}

#[tokio::test]
async fn a_batch_is_cancelled_at_once() {
    let whatsapp = whatsapp_accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&whatsapp.vars())).await;
    let due = rfc3339(Utc::now() + chrono::Duration::hours(2));
    let answer = app
        .post_batch(&json!({"defaults": {"message": "sale", "sendAt": due},
            "messages": [{"to": "+14155550101"}, {"to": "not a number"}, {"to": "+14155550103"}]}))
        .await;
    let batch = answer["batchId"]
        .as_str()
        .expect("the answer names the batch");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert!(answer["results"][0]["scheduledFor"].is_string(), "{answer}");
    let first = answer["results"][0]["messageId"].as_str().unwrap();
    assert_eq!(app.view(first).await.unwrap()["batchId"], batch);

    assert_eq!(
        app.delete(&format!("/api/v1/batches/{batch}"), OTHER_KEY)
            .await
            .0,
        404
    );
    let (status, cancelled) = app.delete(&format!("/api/v1/batches/{batch}"), KEY).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["cancelled"], 2, "{cancelled}");
    assert_eq!(cancelled["alreadySent"], 0, "{cancelled}");
    assert_eq!(app.view(first).await.unwrap()["status"], "cancelled");
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        app.delete(&format!("/api/v1/batches/{unknown}"), KEY)
            .await
            .0,
        404
    );
    assert!(whatsapp.bodies().await.is_empty());
}

#[tokio::test]
async fn through_sqs_a_scheduled_message_waits_in_the_table_not_the_queue() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let (tq, table) = (&stack.tq, &stack.table);
    let gateway = TestApp::spawn_from_config(&config_with(&stack.vars())).await;
    let whatsapp = whatsapp_accepting().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = crate::helpers::process::consumer(&tq.queue_url, table, &whatsapp.vars(), &log);
    let due = DateTime::from_timestamp_millis(Utc::now().timestamp_millis() + 4000).unwrap();
    let (status, answer) = gateway
        .send(&json!({"to": TO, "message": "later", "sendAt": rfc3339(due)}))
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["messageId"].as_str().unwrap().to_owned();
    assert_eq!(gateway.view(&id).await.unwrap()["status"], "accepted");
    let queued = queue_count(&stack.aws.sqs, &tq.queue_url).await;
    assert_eq!(queued, 0, "nothing waits in SQS");

    let view = gateway.wait_for_status(&id, "submitted").await;
    child.kill();
    let submitted = reached(&view, "submitted");
    assert!(submitted >= due, "{view}");
    assert!(submitted - due <= chrono::Duration::seconds(20), "{view}");
    let attempt = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["status"] == "submitted")
        .unwrap()["attempt"]
        .clone();
    assert_eq!(attempt, 1, "waiting spent no attempt: {view}");
    assert_eq!(whatsapp.bodies().await.len(), 1);
}

#[tokio::test]
async fn through_sqs_a_cancel_wins_over_a_late_delivery() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let (tq, table) = (&stack.tq, &stack.table);
    let gateway = TestApp::spawn_from_config(&config_with(&stack.vars())).await;
    let whatsapp = whatsapp_accepting().await;
    let due = rfc3339(Utc::now() + chrono::Duration::hours(1));
    let answer = gateway
        .post_batch(&json!({"defaults": {"message": "sale", "sendAt": due},
            "messages": [{"to": "+14155550101"}, {"to": "+14155550102"}]}))
        .await;
    let batch = answer["batchId"].as_str().unwrap();
    let id = answer["results"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, view) = gateway.delete(&format!("/api/v1/messages/{id}"), KEY).await;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("cancelled")),
        "{view}"
    );
    let (status, cancelled) = gateway
        .delete(&format!("/api/v1/batches/{batch}"), KEY)
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        cancelled["messages"].as_array().unwrap().len(),
        2,
        "{cancelled}"
    );
    assert_eq!(
        schedule_items(&stack.aws.dynamodb, table).await,
        0,
        "unscheduled"
    );

    // The envelope reaches the consumer anyway (a sweep that published it
    // as the cancel came): the consumer's mark refuses it.
    let mut envelope: herald::contract::Envelope =
        crate::helpers::envelope("ops", json!({"to": "+14155550101", "message": "sale"}));
    envelope.id = id.parse().unwrap();
    stack
        .aws
        .sns
        .publish()
        .topic_arn(&tq.topic_arn)
        .message(envelope.to_json())
        .send()
        .await
        .unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = crate::helpers::process::consumer(&tq.queue_url, table, &whatsapp.vars(), &log);
    eventually(
        "the consumer took the message",
        Duration::from_secs(20),
        async || (queue_count(&stack.aws.sqs, &tq.queue_url).await == 0).then_some(()),
    )
    .await;
    // And an unscheduled message is sent, then too late to cancel.
    let sent = gateway
        .send_accepted(&json!({"to": TO, "message": "now"}))
        .await;
    gateway.wait_for_status(&sent, "submitted").await;
    child.kill();
    let (status, problem) = gateway
        .delete(&format!("/api/v1/messages/{sent}"), KEY)
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (409, &json!("already-sent")),
        "{problem}"
    );
    assert_eq!(gateway.view(&id).await.unwrap()["status"], "cancelled");
    let bodies = whatsapp.bodies().await;
    assert_eq!(bodies.len(), 1, "only the unscheduled message: {bodies:?}");
}

#[tokio::test]
async fn with_sns_and_no_status_table_a_schedule_is_refused_not_lost() {
    let aws = crate::helpers::aws::emulator().await;
    let tq = aws.topic_with_queue(false, 5).await;
    let gateway =
        TestApp::spawn_from_config(&config_with(&[("SNS_TOPIC_ARN", tq.topic_arn.as_str())])).await;
    let due = rfc3339(Utc::now() + chrono::Duration::hours(1));
    let (status, problem) = gateway
        .send(&json!({"to": TO, "message": "later", "sendAt": due}))
        .await;
    assert_eq!(status, 501, "{problem}");
    assert_eq!(problem["code"], "scheduling-not-configured");
}

/// Visible plus in-flight messages of a queue.
async fn queue_count(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|a| attributes.get(a).and_then(|v| v.parse::<u64>().ok()))
    .sum()
}

/// Schedule entries left in the status table.
async fn schedule_items(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> usize {
    let mut count = 0;
    for shard in 0..herald::status::dynamodb::schedule::SHARDS {
        count += dynamodb
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("sched#{shard}")),
            )
            .send()
            .await
            .unwrap()
            .count() as usize;
    }
    count
}

#[tokio::test]
async fn through_sqs_past_bounds_and_quiet_hours_hold_as_on_the_embedded_default() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let (tq, table) = (&stack.tq, &stack.table);
    let gateway = TestApp::spawn_from_config(&config_with(&stack.vars())).await;
    // Bounds: the same 400s.
    let far = rfc3339(Utc::now() + chrono::Duration::days(36));
    let (status, problem) = gateway
        .send(&json!({"to": TO, "message": "hi", "sendAt": far}))
        .await;
    assert_eq!(
        (status, &problem["errors"][0]["field"]),
        (400, &json!("sendAt"))
    );
    // Quiet hours now: it waits in the schedule, not in SQS.
    let (quiet, end) = quiet_around_now(chrono_tz::Tz::Europe__Madrid);
    let (status, held) = gateway
        .send(&json!({"to": TO, "message": "hi", "quietHours": quiet}))
        .await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(parse(&held["scheduledFor"]), end, "{held}");
    assert_eq!(schedule_items(&stack.aws.dynamodb, table).await, 1);
    assert_eq!(queue_count(&stack.aws.sqs, &tq.queue_url).await, 0);
    // A past sendAt goes at once.
    let (status, now) = gateway
        .send(&json!({"to": TO, "message": "hi", "sendAt": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(status, 202, "{now}");
    assert!(now.get("scheduledFor").is_none());
    let whatsapp = whatsapp_accepting().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = crate::helpers::process::consumer(&tq.queue_url, table, &whatsapp.vars(), &log);
    gateway
        .wait_for_status(now["messageId"].as_str().unwrap(), "submitted")
        .await;
    child.kill();
    let held_id = held["messageId"].as_str().unwrap();
    assert_eq!(gateway.view(held_id).await.unwrap()["status"], "accepted");
}

#[tokio::test]
async fn through_sqs_a_message_that_expires_while_the_provider_fails_is_failed_expired() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let (tq, table) = (&stack.tq, &stack.table);
    let gateway = TestApp::spawn_from_config(&config_with(&stack.vars())).await;
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wiremock::ResponseTemplate::new(503))
        .mount(&whatsapp.server)
        .await;
    let mut vars = whatsapp.vars();
    vars.push(("DELIVERY_RETRY_BASE_MS", "200".to_owned()));
    vars.push(("DELIVERY_RETRY_MAX_MS", "400".to_owned()));
    vars.push(("DELIVERY_MAX_ATTEMPTS", "50".to_owned()));
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = crate::helpers::process::consumer(&tq.queue_url, table, &vars, &log);
    let id = gateway
        .send_accepted(&json!({"to": TO, "message": "code 1234", "validitySeconds": 3}))
        .await;
    let view = eventually("failed, expired", Duration::from_secs(30), async || {
        gateway.view(&id).await.filter(|v| v["status"] == "failed")
    })
    .await;
    child.kill();
    assert_eq!(view["error"]["code"], "expired", "{view}");
    assert!(
        !whatsapp.bodies().await.is_empty(),
        "tried while it was valid"
    );
}
