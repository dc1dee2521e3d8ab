//! Bench-only: a Lambda Runtime API emulator that runs `herald-consumer` as
//! Lambda would and measures it, with a fake Graph API on the same server.
//!
//! `cargo run --release --example bench_lambda_emulator -- <herald-consumer> <batch> <invocations> <latency-ms> <mps>`
//!
//! It starts the consumer with `AWS_LAMBDA_RUNTIME_API` pointing here and
//! serves it `invocations` SQS events of `batch` records each (envelopes to the
//! fake Graph API, which answers after `latency-ms`). It prints one JSON line:
//! the cold start (exec → first `GET /next`, as Lambda's Init phase ends), the
//! duration of each invocation (event handed out → response posted: what
//! Lambda bills), and the billed ms per record (median invocation / batch).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

struct Emulator {
    started: Instant,
    events: Mutex<mpsc::Receiver<(String, Value)>>,
    first_next: Mutex<Option<Duration>>,
    handed_out: Mutex<std::collections::HashMap<String, Instant>>,
    done: mpsc::Sender<(String, Duration, Value)>,
    latency: Duration,
    graph_calls: std::sync::atomic::AtomicU64,
}

async fn next(State(e): State<Arc<Emulator>>) -> impl IntoResponse {
    e.first_next
        .lock()
        .await
        .get_or_insert_with(|| e.started.elapsed());
    let Some((id, event)) = e.events.lock().await.recv().await else {
        // No more events: keep the consumer waiting, as Lambda would.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
    e.handed_out.lock().await.insert(id.clone(), Instant::now());
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:herald-consumer"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".parse().unwrap(),
    );
    (headers, axum::Json(event))
}

async fn respond(
    State(e): State<Arc<Emulator>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let took = e
        .handed_out
        .lock()
        .await
        .remove(&id)
        .map_or(Duration::ZERO, |t| t.elapsed());
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = e.done.send((id, took, body)).await;
    StatusCode::ACCEPTED
}

async fn graph_send(State(e): State<Arc<Emulator>>, body: axum::Json<Value>) -> impl IntoResponse {
    tokio::time::sleep(e.latency).await;
    let n = e
        .graph_calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let to = body.0["to"].as_str().unwrap_or("14155550123").to_owned();
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": format!("wamid.bench{n}")}]
    }))
}

fn envelope(n: usize) -> String {
    json!({
        "version": 1,
        "id": uuid::Uuid::now_v7(),
        "channel": "whatsapp",
        "to": "+14155550123",
        "message": {"type": "text", "text": {"body": format!("bench {n}"), "preview_url": false}},
        "replyTo": null, "callbackData": null, "metadata": {},
        "acceptedAt": "2026-11-24T12:00:00.000Z", "apiKeyId": "bench"
    })
    .to_string()
}

fn sqs_event(batch: usize, first: usize) -> Value {
    let records: Vec<Value> = (0..batch)
        .map(|i| {
            json!({
                "messageId": uuid::Uuid::new_v4(),
                "receiptHandle": "handle",
                "body": envelope(first + i),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764000000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:herald",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: bench_lambda_emulator <herald-consumer> <batch> <invocations> <latency-ms> <mps>";
    let consumer = args.get(1).expect(usage).clone();
    let batch: usize = args.get(2).expect(usage).parse().expect(usage);
    let invocations: usize = args.get(3).expect(usage).parse().expect(usage);
    let latency = Duration::from_millis(args.get(4).expect(usage).parse().expect(usage));
    let mps: u32 = args.get(5).expect(usage).parse().expect(usage);

    let (events_tx, events_rx) = mpsc::channel(invocations.max(1));
    let (done_tx, mut done_rx) = mpsc::channel(invocations.max(1));
    for i in 0..invocations {
        events_tx
            .send((format!("req-{i}"), sqs_event(batch, i * batch)))
            .await
            .unwrap();
    }
    drop(events_tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let emulator = Arc::new(Emulator {
        started: Instant::now(),
        events: Mutex::new(events_rx),
        first_next: Mutex::new(None),
        handed_out: Mutex::default(),
        done: done_tx,
        latency,
        graph_calls: Default::default(),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(respond))
        .route("/v25.0/123/messages", post(graph_send))
        .with_state(emulator.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The emulator's clock starts at the consumer's exec.
    let emulator_start = Instant::now();
    let mut child = tokio::process::Command::new(&consumer)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "herald-consumer")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("WHATSAPP_ACCESS_TOKEN", "bench")
        .env("WHATSAPP_PHONE_NUMBER_ID", "123")
        .env("WHATSAPP_API_BASE_URL", format!("http://{addr}"))
        .env("WHATSAPP_MAX_MPS", mps.to_string())
        // Every record goes to one test number: the pair rate is not measured here.
        .env("WHATSAPP_PAIR_RATE", "0")
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start herald-consumer");
    let exec_offset = emulator_start.duration_since(emulator.started);

    let mut durations = Vec::new();
    let mut failures = 0;
    for _ in 0..invocations {
        let (_, took, body) = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
            .await
            .expect("the consumer answers each invocation")
            .expect("the emulator is running");
        failures += body["batchItemFailures"].as_array().map_or(0, Vec::len);
        durations.push(took);
    }
    let _ = child.kill().await;
    let cold_start = emulator
        .first_next
        .lock()
        .await
        .map(|t| t.saturating_sub(exec_offset));
    durations.sort();
    let median = durations[durations.len() / 2];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}",
        json!({
            "batch": batch,
            "invocations": invocations,
            "latencyMs": latency.as_millis() as u64,
            "mps": mps,
            "coldStartMs": cold_start.map(ms),
            "invocationMsMedian": ms(median),
            "invocationMsMin": ms(durations[0]),
            "invocationMsMax": ms(durations[durations.len() - 1]),
            "billedMsPerRecord": ms(median) / batch as f64,
            "graphCalls": emulator.graph_calls.load(std::sync::atomic::Ordering::Relaxed),
            "batchItemFailures": failures,
        })
    );
}
