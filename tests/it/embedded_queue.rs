//! The embedded default: durable queue, in-process worker, dead letters.

use std::sync::Arc;
use std::time::Duration;

use herald::embedded::{EmbeddedQueue, Worker};
use serde_json::json;

use crate::helpers::whatsapp::{FakeWhatsApp, graph_error, send_endpoint, success, undeliverable};
use crate::helpers::{TO, TestApp, envelope, eventually, pairs, text_envelope};

/// A queue in a fresh directory, a fake Graph API and a worker between them.
struct Setup {
    _dir: tempfile::TempDir,
    queue: EmbeddedQueue,
    fake: FakeWhatsApp,
    worker: Worker,
}

async fn setup(max_attempts: u32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    let fake = FakeWhatsApp::start().await;
    let worker = Worker::new(
        queue.clone(),
        Arc::new(fake.pipeline_with_attempts(Duration::from_secs(5), max_attempts)),
    );
    Setup {
        _dir: dir,
        queue,
        fake,
        worker,
    }
}

/// As [`setup`], with statuses kept in the queue's database as the gateway
/// keeps them.
async fn setup_with_statuses() -> Setup {
    let Setup {
        _dir, queue, fake, ..
    } = setup(3).await;
    queue.configure_statuses(Duration::from_secs(86_400), false);
    let statuses: Arc<dyn herald::status::StatusStore> = Arc::new(queue.clone());
    let pipeline = fake
        .pipeline_with_attempts(Duration::from_secs(5), 3)
        .with_statuses(statuses);
    let worker = Worker::new(queue.clone(), Arc::new(pipeline));
    Setup {
        _dir,
        queue,
        fake,
        worker,
    }
}

/// An enqueued envelope is delivered once and leaves the queue.
#[tokio::test]
async fn an_enqueued_envelope_is_delivered_and_removed() {
    let Setup {
        queue,
        fake,
        worker,
        _dir,
    } = setup(3).await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.e"))
        .expect(1)
        .mount(&fake.server)
        .await;

    let env = text_envelope("embedded");
    queue.enqueue(&env).await.unwrap();
    assert_eq!(worker.run_once().await, 1);

    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.depth, stats.dead_letters), (0, 0));
}

/// Retryable failures are rescheduled with backoff; past the maximum attempts
/// the envelope moves to the dead-letter table, which lists it with its reason.
#[tokio::test]
async fn retries_end_in_the_dead_letter_table_after_max_attempts() {
    let Setup {
        queue,
        fake,
        worker,
        _dir,
    } = setup(3).await;
    send_endpoint()
        .respond_with(graph_error(500, 131_000, "Something went wrong", "unknown"))
        .expect(3)
        .mount(&fake.server)
        .await;
    let env = text_envelope("doomed");
    queue.enqueue(&env).await.unwrap();

    let handled = std::cell::Cell::new(0);
    eventually(
        "the envelope dead-lettered",
        Duration::from_secs(10),
        async || {
            handled.set(handled.get() + worker.run_once().await);
            (queue.stats().await.unwrap().dead_letters == 1).then_some(())
        },
    )
    .await;

    assert_eq!(handled.get(), 3);
    let dead = queue
        .dead_letters(
            herald::embedded::DeadLetterKind::Messages,
            10,
            &herald::status::Scope::Admin,
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, env.id.to_string());
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].reason.contains("gave up after 3 attempts"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].envelope["message"]["text"]["body"], "doomed");
}

/// A permanent failure is dead-lettered at once, after one request.
#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let Setup {
        queue,
        fake,
        worker,
        _dir,
    } = setup(5).await;
    send_endpoint()
        .respond_with(graph_error(
            400,
            131_047,
            "Re-engagement message",
            "more than 24 hours have passed",
        ))
        .expect(1)
        .mount(&fake.server)
        .await;
    let env = text_envelope("late");
    queue.enqueue(&env).await.unwrap();
    worker.run_once().await;
    let dead = queue
        .dead_letters(
            herald::embedded::DeadLetterKind::Messages,
            10,
            &herald::status::Scope::Admin,
        )
        .await
        .unwrap();
    assert!(dead[0].reason.contains("131047"), "{}", dead[0].reason);
}

/// Re-enqueueing the same id is a no-op: one delivery.
#[tokio::test]
async fn the_same_id_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    let env = text_envelope("once");
    queue.enqueue(&env).await.unwrap();
    queue.enqueue(&env).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().depth, 1);
}

/// A second gateway cannot open a data directory another one holds.
#[tokio::test]
async fn a_data_directory_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedQueue::open(dir.path(), 0).unwrap();
    first.stats().await.unwrap();
    let second = EmbeddedQueue::open(dir.path(), 0);
    assert!(second.is_err(), "two queues opened the same directory");
}

/// The gateway with no SNS topic accepts a send and delivers it in-process.
#[tokio::test]
async fn the_gateway_without_sns_delivers_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.gw"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&fake.vars())).await;
    assert_eq!(
        app.post_message(&json!({"to": TO, "message": "in process"}))
            .await
            .status(),
        202
    );
    let bodies = eventually(
        "a request to WhatsApp",
        Duration::from_secs(10),
        async || Some(fake.bodies().await).filter(|b| !b.is_empty()),
    )
    .await;
    assert_eq!(bodies.len(), 1);
}

/// A gateway on the embedded queue delivering to `fake`, with extra settings.
async fn embedded_gateway(
    dir: &std::path::Path,
    fake: &FakeWhatsApp,
    extra: &[(&str, &str)],
) -> crate::helpers::TestApp {
    let whatsapp = fake.vars();
    let mut vars = pairs(&whatsapp);
    vars.extend([
        ("DELIVERY_RETRY_BASE_MS", "20"),
        ("DELIVERY_RETRY_MAX_MS", "100"),
    ]);
    vars.extend_from_slice(extra);
    TestApp::spawn_embedded(dir, &vars).await
}

/// Many concurrent sends: every accepted id is delivered exactly once, none lost.
#[tokio::test]
async fn concurrent_sends_are_each_delivered_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.c"))
        .mount(&fake.server)
        .await;
    let app = Arc::new(embedded_gateway(dir.path(), &fake, &[]).await);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let app = app.clone();
        tasks.spawn(async move {
            let r = app
                .post_message(
                    &json!({"to": TO, "message": format!("c{i}"), "callbackData": format!("c{i}")}),
                )
                .await;
            assert_eq!(r.status(), 202);
            format!("c{i}")
        });
    }
    let mut accepted = Vec::new();
    while let Some(t) = tasks.join_next().await {
        accepted.push(t.unwrap());
    }

    eventually(
        "every accepted send delivered",
        Duration::from_secs(20),
        async || (fake.bodies().await.len() >= accepted.len()).then_some(()),
    )
    .await;
    // Not a wait for an outcome: time for a duplicate to show up, if one were sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delivered: Vec<String> = fake
        .bodies()
        .await
        .iter()
        .map(|b| b["biz_opaque_callback_data"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    accepted.sort();
    assert_eq!(delivered, accepted);
}

/// When the queue cannot grow (disk full, here the size cap), sends get 503 and
/// every 202 that was given is an envelope on disk.
#[tokio::test]
async fn a_full_queue_answers_503_and_keeps_every_accepted_message() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    // WhatsApp is down, so nothing drains while the queue fills.
    send_endpoint()
        .respond_with(graph_error(503, 131_016, "Service unavailable", "down"))
        .mount(&fake.server)
        .await;
    let app = embedded_gateway(
        dir.path(),
        &fake,
        &[
            ("EMBEDDED_MAX_DB_MB", "1"),
            ("DELIVERY_RETRY_BASE_MS", "60000"),
            ("DELIVERY_RETRY_MAX_MS", "60000"),
        ],
    )
    .await;

    let padding = "p".repeat(3500);
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..2000 {
        let r = app
            .post_message(
                &json!({"to": TO, "message": format!("fill {i}"), "metadata": {"pad": padding}}),
            )
            .await;
        if r.status() == 202 {
            accepted += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the 1 MiB cap was reached");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(accepted > 10, "only {accepted} accepted");

    let health = app.get("/health").await;
    assert_eq!(
        health.status(),
        503,
        "a queue that cannot write is not ready"
    );
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["failing"], serde_json::json!(["queue"]));
    assert!(
        health["checks"]["queue"]["detail"]["writeFailure"]
            .as_str()
            .unwrap()
            .contains("full")
    );
    assert_eq!(health["checks"]["queue"]["detail"]["depth"], accepted);
}

/// `GET /api/v1/dead-letters` lists what the embedded default gave up on.
#[tokio::test]
async fn dead_letters_are_listed_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(undeliverable())
        .mount(&fake.server)
        .await;
    let app = embedded_gateway(dir.path(), &fake, &[]).await;
    let id = app
        .post_message(&json!({"to": TO, "message": "nobody"}))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["messageId"]
        .clone();

    let body = eventually(
        "a dead letter listed",
        Duration::from_secs(10),
        async || {
            Some(
                app.get_json("/api/v1/dead-letters", crate::helpers::KEY)
                    .await,
            )
            .filter(|b| !b["deadLetters"].as_array().unwrap().is_empty())
        },
    )
    .await;
    let dead = &body["deadLetters"][0];
    assert_eq!(dead["id"], id);
    assert!(dead["reason"].as_str().unwrap().contains("131026"));
    assert_eq!(dead["envelope"]["message"]["text"]["body"], "nobody");
    assert_eq!(app.get("/api/v1/dead-letters").await.status(), 401);
}

/// An operator redrives a dead letter: it goes back to the queue with its
/// attempts reset and is delivered; its history keeps the failure and shows
/// the redrive. Another key can neither redrive nor delete it; a deleted one
/// is gone.
#[tokio::test]
async fn a_redriven_dead_letter_is_delivered_and_a_deleted_one_is_gone() {
    use crate::helpers::{KEY, OTHER_KEY, history_statuses};
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(undeliverable())
        .mount(&fake.server)
        .await;
    let app = embedded_gateway(dir.path(), &fake, &[]).await;
    let mut ids = Vec::new();
    for text in ["to redrive", "to delete"] {
        let answer: serde_json::Value = app
            .post_message(&json!({"to": TO, "message": text}))
            .await
            .json()
            .await
            .unwrap();
        ids.push(answer["messageId"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_for_status(id, "failed").await;
    }
    let act = |method: &str, path: String, key: &'static str| {
        let request = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .header("x-api-key", key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let (redrive, delete) = (
        format!("/api/v1/dead-letters/{}/redrive", ids[0]),
        format!("/api/v1/dead-letters/{}", ids[1]),
    );
    assert_eq!(
        act("POST", redrive.clone(), OTHER_KEY).await,
        404,
        "another key's"
    );
    assert_eq!(
        act("DELETE", delete.clone(), OTHER_KEY).await,
        404,
        "another key's"
    );
    assert_eq!(
        act("POST", "/api/v1/dead-letters/nope/redrive".into(), KEY).await,
        404
    );

    // The cause is fixed; the operator redrives.
    fake.server.reset().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.REDRIVEN"))
        .mount(&fake.server)
        .await;
    assert_eq!(act("POST", redrive.clone(), KEY).await, 202);
    let view = app.wait_for_status(&ids[0], "submitted").await;
    assert_eq!(
        history_statuses(&view),
        ["accepted", "failed", "redriven", "submitted"]
    );
    assert_eq!(view["history"][1]["error"]["code"], 131_026);
    assert_eq!(view["history"][3]["attempt"], 1, "attempts were reset");
    assert_eq!(view["error"], serde_json::Value::Null);
    assert_eq!(
        act("POST", redrive, KEY).await,
        404,
        "no longer a dead letter"
    );

    assert_eq!(act("DELETE", delete.clone(), KEY).await, 204);
    assert_eq!(act("DELETE", delete, KEY).await, 404);
    let list = app.get_json("/api/v1/dead-letters", KEY).await;
    assert_eq!(list["deadLetters"], json!([]));
    assert_eq!(fake.bodies().await.len(), 1, "one delivery since the fix");
}

/// A slow commit whose caller gave up (its request timed out: "may have been
/// published") still stores the envelope; the client's retry with the same
/// Idempotency-Key brings the same id, and the queue does not store it again,
/// even after the first copy was delivered. One delivery.
#[tokio::test]
async fn a_retry_of_a_commit_whose_caller_gave_up_is_not_queued_again() {
    let Setup {
        queue,
        fake,
        worker,
        _dir,
    } = setup_with_statuses().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.once"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let env = text_envelope("slow fsync");
    queue.simulate_slow_commit(Duration::from_millis(1000));
    let gave_up = tokio::time::timeout(Duration::from_millis(200), queue.enqueue(&env)).await;
    assert!(gave_up.is_err(), "the caller stopped waiting");
    queue.simulate_slow_commit(Duration::ZERO);
    eventually(
        "the commit went through",
        Duration::from_secs(10),
        async || (queue.stats().await.unwrap().depth == 1).then_some(()),
    )
    .await;

    // The retry while the first copy is queued, and again after its delivery.
    queue.enqueue(&env).await.unwrap();
    assert_eq!(worker.run_once().await, 1);
    queue.enqueue(&env).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().depth, 0);
    assert_eq!(worker.run_once().await, 0);
}

/// A batch whose request timed out after some of its entries were committed
/// and answered (the caller was still waiting for those): the keyed retry
/// brings the same ids, and an entry already delivered is not queued again.
/// (Before: 1, 124, 125 and 1,024 entries of a 2,000-entry batch were
/// delivered twice after the retry, measured with a slow disk.)
#[tokio::test]
async fn a_retry_of_an_answered_and_delivered_entry_is_not_queued_again() {
    let Setup {
        queue,
        fake,
        worker,
        _dir,
    } = setup_with_statuses().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.answered"))
        .expect(1)
        .mount(&fake.server)
        .await;
    let env = text_envelope("answered before the timeout");
    queue.enqueue(&env).await.unwrap();
    assert_eq!(worker.run_once().await, 1);
    // The retry of the timed-out batch publishes the entry again.
    queue.enqueue(&env).await.unwrap();
    assert_eq!(queue.stats().await.unwrap().depth, 0);
    assert_eq!(worker.run_once().await, 0);
}

/// Envelopes leased together wait in the pacer one after another; their lease
/// covers that wait, so none is leased and sent a second time while it waits
/// (before: a 300 s lease with more than 300 s of pacing sent duplicates).
#[tokio::test]
async fn leases_cover_the_pacing_wait() {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.paced"))
        .mount(&fake.server)
        .await;
    // 10 per second and 20 leased at once: the last waits 2 s in the pacer,
    // ten times the base lease.
    let config = herald::config::WhatsAppConfig {
        max_mps: 10,
        ..fake.config(Duration::from_secs(5))
    };
    let pipeline = crate::helpers::whatsapp::pipeline_for(&config, 3);
    let worker =
        Worker::new(queue.clone(), Arc::new(pipeline)).with_lease(Duration::from_millis(200));
    for i in 0..20 {
        queue
            .enqueue(&text_envelope(&format!("paced {i}")))
            .await
            .unwrap();
    }
    // Not a wait for an outcome: the worker runs for a fixed 4 s, long
    // enough for 20 sends at 10 a second and leases expiring many times.
    let run = tokio::spawn(worker.run_until_stopped(tokio::time::sleep(Duration::from_secs(4))));
    run.await.unwrap();
    let sent = fake.server.received_requests().await.unwrap().len();
    assert_eq!(sent, 20, "each envelope sent once");
    assert_eq!(queue.stats().await.unwrap().depth, 0);
}

/// A delivery whose outcome cannot be written (the disk is full) is not
/// forgotten: the worker keeps the settlement, leases nothing new until it is
/// written, and writes it once space is back. Nothing is sent twice.
#[tokio::test]
async fn settlements_survive_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.full").set_delay(Duration::from_millis(300)))
        .mount(&fake.server)
        .await;
    let worker = Worker::new(
        queue.clone(),
        Arc::new(fake.pipeline(Duration::from_secs(5))),
    )
    .with_lease(Duration::from_millis(100));
    for i in 0..5 {
        queue
            .enqueue(&text_envelope(&format!("full {i}")))
            .await
            .unwrap();
    }
    // The disk fills while the five are with WhatsApp.
    let delivering = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run_once().await }
    });
    eventually("the five sent", Duration::from_secs(10), async || {
        (fake.server.received_requests().await.unwrap().len() >= 5).then_some(())
    })
    .await;
    queue.simulate_full_disk(true);
    assert_eq!(delivering.await.unwrap(), 5);
    assert_eq!(worker.pending_settlements(), 5);

    // Still full, and the leases have expired: nothing is leased or sent again.
    // Not a wait for an outcome: the 100 ms leases expire on purpose.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(worker.run_once().await, 0);
    assert_eq!(worker.pending_settlements(), 5);

    // Space is back: the settlements are written first, so nothing is due.
    queue.simulate_full_disk(false);
    assert_eq!(worker.run_once().await, 0);
    assert_eq!(worker.pending_settlements(), 0);
    assert_eq!(queue.stats().await.unwrap().depth, 0);
    assert_eq!(fake.server.received_requests().await.unwrap().len(), 5);
}

/// `/health` on the embedded default reads the database at most once a
/// second, however often it is called: it cannot be used to stall sends.
#[tokio::test]
async fn health_checks_are_cached_and_read_no_table() {
    use herald::publisher::{EmbeddedPublisher, Publisher};
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    for i in 0..3 {
        queue
            .enqueue(&text_envelope(&format!("waiting {i}")))
            .await
            .unwrap();
    }
    let publisher = Arc::new(EmbeddedPublisher::new(queue.clone()));
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let publisher = publisher.clone();
        checks.spawn(async move { publisher.check_health().await });
    }
    while let Some(check) = checks.join_next().await {
        let check = check.unwrap();
        assert!(check.healthy);
        assert_eq!(check.detail["depth"], 3);
    }
    assert_eq!(queue.stats_reads(), 1);
}

/// A full disk shows in `/health` as a reason anyone may read: no path.
#[tokio::test]
async fn health_names_a_full_disk_without_the_data_directory() {
    use herald::publisher::{EmbeddedPublisher, Publisher};
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    let publisher = EmbeddedPublisher::new(queue.clone());
    queue.simulate_full_disk(true);
    let error = publisher
        .publish(&text_envelope("no room"))
        .await
        .unwrap_err();
    assert!(!error.kind.may_have_published());
    let check = publisher.check_health().await;
    assert!(!check.healthy);
    assert_eq!(check.detail["writeFailure"], "disk-full");
    let shown = check.detail.to_string();
    let dir_name = dir.path().file_name().unwrap().to_str().unwrap();
    assert!(!shown.contains(dir_name), "{shown}");
}

/// Dead letters belong to the API key that sent them; an admin key id sees all.
#[tokio::test]
async fn dead_letters_are_listed_per_api_key() {
    use herald::publisher::EmbeddedPublisher;
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    for (key_id, text) in [("ops", "ops secret"), ("billing", "billing secret")] {
        queue
            .enqueue(&envelope(key_id, json!({"to": TO, "message": text})))
            .await
            .unwrap();
    }
    for leased in queue.lease(60_000, 10).await.unwrap() {
        queue
            .settle(
                leased.id,
                herald::embedded::Settlement::DeadLetter {
                    reason: "test".into(),
                },
            )
            .await
            .unwrap();
    }
    let list = async |app: &TestApp, key: &'static str| {
        let body = app.get_json("/api/v1/dead-letters", key).await;
        body["deadLetters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d["envelope"]["message"]["text"]["body"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    let publisher = Arc::new(EmbeddedPublisher::new(queue.clone()));
    let app =
        crate::helpers::TestApp::spawn(&crate::helpers::config_with(&[]), publisher.clone()).await;
    assert_eq!(list(&app, crate::helpers::KEY).await, ["ops secret"]);
    assert_eq!(
        list(&app, crate::helpers::OTHER_KEY).await,
        ["billing secret"]
    );

    let admin = crate::helpers::TestApp::spawn(
        &crate::helpers::config_with(&[("ADMIN_KEY_IDS", "ops")]),
        publisher,
    )
    .await;
    let mut all = list(&admin, crate::helpers::KEY).await;
    all.sort();
    assert_eq!(all, ["billing secret", "ops secret"]);
}

/// WhatsApp goes down: after five failures in a row the circuit opens, nothing
/// is sent during the cool-down and queued messages spend no attempts; when it
/// comes back, one probe closes the circuit and everything is delivered.
#[tokio::test]
async fn an_open_circuit_holds_messages_until_the_provider_is_back() {
    use herald::delivery::{Pipeline, PipelineLimits};
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    let fake = FakeWhatsApp::start().await;
    send_endpoint()
        .respond_with(graph_error(503, 131_016, "Service unavailable", "down"))
        .mount(&fake.server)
        .await;
    let client =
        herald::channels::whatsapp::WhatsAppClient::new(&fake.config(Duration::from_secs(5)))
            .unwrap();
    let pipeline = Arc::new(Pipeline::new(
        herald::channels::Channels::whatsapp(client),
        crate::helpers::whatsapp::fast_retries(),
        PipelineLimits {
            max_attempts: 3,
            max_in_flight: Some(4),
            circuit_cooldown: Duration::from_millis(2000),
            ..PipelineLimits::default()
        },
    ));
    for i in 0..10 {
        queue
            .enqueue(&text_envelope(&format!("outage {i}")))
            .await
            .unwrap();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(queue.clone(), pipeline.clone());
    let running = tokio::spawn(worker.run_until_stopped(async {
        let _ = stopped.await;
    }));

    eventually("the circuit open", Duration::from_secs(5), async || {
        pipeline.any_circuit_open().then_some(())
    })
    .await;
    assert_eq!(pipeline.circuits()[0]["circuit"], "open");
    // Not waits for an outcome: requests in flight when it opened settle,
    // then a 400 ms window of the 2 s cool-down in which nothing may be sent.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent_when_open = fake.server.received_requests().await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        fake.server.received_requests().await.unwrap().len(),
        sent_when_open,
        "nothing is sent while the circuit is open"
    );

    fake.server.reset().await;
    send_endpoint()
        .respond_with(success("14155550123", "wamid.back"))
        .mount(&fake.server)
        .await;
    eventually(
        "delivered after the outage",
        Duration::from_secs(10),
        async || (queue.stats().await.unwrap().depth == 0).then_some(()),
    )
    .await;
    let _ = stop.send(());
    running.await.unwrap();
    assert_eq!(
        queue.stats().await.unwrap().dead_letters,
        0,
        "no attempts were burnt"
    );
    assert!(!pipeline.any_circuit_open());
    assert_eq!(fake.server.received_requests().await.unwrap().len(), 10);
}

/// A fake Graph API that enforces WhatsApp's pair rate: a second message to
/// the same recipient within 6 s gets error 131056.
struct PairRateFake {
    last: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    refused: std::sync::atomic::AtomicUsize,
}

impl wiremock::Respond for PairRateFake {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let to = body["to"].as_str().unwrap().to_owned();
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap();
        if last
            .get(&to)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(6))
        {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return graph_error(
                400,
                131_056,
                "(Business Account, Consumer Account) pair rate limit hit",
                "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.",
            );
        }
        last.insert(to.clone(), now);
        success(&to, &format!("wamid.{}", uuid::Uuid::now_v7().simple()))
    }
}

/// Three messages to one person and five to others: the first to that person
/// and all five others go at once; the person's next two wait for the pair
/// window (not sent, so no 131056), without holding anyone else back.
#[tokio::test]
async fn the_pair_rate_is_avoided_without_holding_back_other_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let queue = EmbeddedQueue::open(dir.path(), 0).unwrap();
    let fake = FakeWhatsApp::start().await;
    let responder = Arc::new(PairRateFake {
        last: Default::default(),
        refused: Default::default(),
    });
    send_endpoint()
        .respond_with(ArcResponder(responder.clone()))
        .mount(&fake.server)
        .await;
    let config = herald::config::WhatsAppConfig {
        pair_rate: 1,
        ..fake.config(Duration::from_secs(5))
    };
    let worker = Worker::new(
        queue.clone(),
        Arc::new(crate::helpers::whatsapp::pipeline_for(&config, 3)),
    );
    for i in 0..3 {
        queue
            .enqueue(&text_envelope(&format!("same person {i}")))
            .await
            .unwrap();
    }
    for i in 0..5 {
        queue
            .enqueue(&envelope(
                "ops",
                json!({"to": format!("+1415555020{i}"), "message": "other"}),
            ))
            .await
            .unwrap();
    }
    // Not a wait for an outcome: the worker runs for a fixed 1.5 s, well
    // inside the 6 s pair window.
    worker
        .run_until_stopped(tokio::time::sleep(Duration::from_millis(1500)))
        .await;
    assert_eq!(
        responder.refused.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no 131056"
    );
    assert_eq!(fake.server.received_requests().await.unwrap().len(), 6);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.depth, stats.dead_letters),
        (2, 0),
        "two wait for the window"
    );
}

/// Lets a shared responder be mounted (wiremock takes responders by value).
struct ArcResponder(Arc<PairRateFake>);

impl wiremock::Respond for ArcResponder {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        self.0.respond(request)
    }
}
