//! Bench-only: a fake WhatsApp Graph API with a fixed answer latency and a
//! throughput cap (and optionally Meta's pair rate limit), for
//! `bench/delivery.py` and `bench/fleet.py`.
//!
//! ```sh
//! cargo run --release --example bench_graph_fake -- --port 0 --latency-ms 400 --cap-mps 80
//! ```
//!
//! Settings come from `PORT`, `LATENCY_MS`, `CAP_MPS`, `WINDOW_COUNTS` and
//! `PAIR_WINDOW_MS` in the environment, or from `--port`, `--latency-ms`,
//! `--cap-mps`, `--window-counts` and `--pair-window-ms` (the arguments win).
//! Port 0 picks a free one; the first line on stdout is
//! `listening on 127.0.0.1:PORT`.
//!
//! - `POST /{version}/{phone_number_id}/messages`: requests are counted in a
//!   sliding one-second window of arrival times. When more than `CAP_MPS`
//!   requests arrived in the last second, this one included, the answer is Meta's
//!   throughput error (HTTP 400, code 130429); otherwise it is Meta's documented
//!   success with a unique wamid. Either answer is sent after `LATENCY_MS`. With
//!   `WINDOW_COUNTS=all` (the default) refused requests count too, so a sender
//!   that keeps sending at the cap after one refusal keeps being refused; with
//!   `accepted` only accepted ones do. The `text.body` of every accepted request
//!   is remembered so that duplicates can be counted. With `PAIR_WINDOW_MS`
//!   above 0 (default 0, off) a request within the cap to a recipient (`to`)
//!   whose last accepted request arrived less than that many milliseconds
//!   earlier is refused with Meta's pair rate limit error (HTTP 400, code
//!   131056), counted as `pair_limited_131056`; it counts in the sliding
//!   window like any refused request.
//! - `GET /stats`: the counters as JSON (times in Unix milliseconds; accept times
//!   are the arrival times of the accepted requests).
//! - `GET /accepts`: every accepted request as `[arrival Unix ms, to]`, every
//!   130429 as `[arrival Unix ms, to]` and every 131056 as `[arrival Unix ms,
//!   to, ms since that recipient's last accept]`, in arrival order (for rates
//!   over part of a run and the spacing of requests).
//! - `POST /reset`: clears the counters (and the recipients' last accepts).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

const WINDOW: Duration = Duration::from_secs(1);

struct Settings {
    port: u16,
    latency: Duration,
    cap_mps: usize,
    count_refused: bool,
    /// Meta's pair rate limit: the least time between two accepted requests
    /// to one recipient; zero turns it off.
    pair_window: Duration,
}

impl Settings {
    fn from_env_and_args() -> Result<Self, String> {
        let mut port = env_number("PORT", 0)?;
        let mut latency_ms = env_number("LATENCY_MS", 0)?;
        let mut cap_mps = env_number("CAP_MPS", 80)?;
        let mut pair_window_ms = env_number("PAIR_WINDOW_MS", 0)?;
        let mut window_counts = std::env::var("WINDOW_COUNTS").unwrap_or_else(|_| "all".into());
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--window-counts" {
                window_counts = args.next().ok_or("--window-counts needs a value")?;
                continue;
            }
            let target = match flag.as_str() {
                "--port" => &mut port,
                "--latency-ms" => &mut latency_ms,
                "--cap-mps" => &mut cap_mps,
                "--pair-window-ms" => &mut pair_window_ms,
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (expected --port, --latency-ms, --cap-mps, --window-counts, --pair-window-ms)"
                    ));
                }
            };
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            *target = value
                .parse()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        }
        let count_refused = match window_counts.as_str() {
            "all" => true,
            "accepted" => false,
            other => return Err(format!("window counts {other:?}: expected all or accepted")),
        };
        Ok(Self {
            port: u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?,
            latency: Duration::from_millis(latency_ms),
            cap_mps: usize::try_from(cap_mps.max(1)).unwrap_or(usize::MAX),
            count_refused,
            pair_window: Duration::from_millis(pair_window_ms),
        })
    }
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name}: {value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

#[derive(Default)]
struct Counters {
    requests: u64,
    accepted: u64,
    throttled: u64,
    pair_limited: u64,
    malformed: u64,
    duplicates: u64,
    first_accept_ms: Option<u64>,
    last_accept_ms: Option<u64>,
    max_window: usize,
    max_accepted_window: usize,
    /// Arrival times of all requests within the last second, oldest first.
    window: VecDeque<Instant>,
    /// Arrival times of accepted requests within the last second.
    accepted_window: VecDeque<Instant>,
    /// `text.body` of every accepted request.
    bodies: HashSet<String>,
    /// Arrival time of the last accepted request to each recipient (kept only
    /// with the pair rate limit on).
    last_accept_to: HashMap<String, Instant>,
    /// Every accepted request: arrival (Unix ms) and recipient.
    accept_log: Vec<(u64, String)>,
    /// Every 130429: arrival (Unix ms) and recipient.
    throttle_log: Vec<(u64, String)>,
    /// Every 131056: arrival (Unix ms), recipient, ms since its last accept.
    pair_log: Vec<(u64, String, u64)>,
}

struct Fake {
    latency: Duration,
    cap_mps: usize,
    count_refused: bool,
    pair_window: Duration,
    next_id: AtomicU64,
    counters: Mutex<Counters>,
}

impl Fake {
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Verdict {
    Accept,
    Throttle,
    PairLimited,
    Malformed,
}

/// Drops the arrival times that are a second or more before `now`.
fn expire(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        window.pop_front();
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn send(
    State(fake): State<Arc<Fake>>,
    Path((_version, _phone_number_id)): Path<(String, String)>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let arrived = Instant::now();
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let to = request
        .as_ref()
        .and_then(|r| r.get("to"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let text = request
        .as_ref()
        .and_then(|r| r.pointer("/text/body"))
        .and_then(Value::as_str)
        .map(str::to_owned);

    let verdict = {
        let mut c = fake.counters();
        c.requests += 1;
        expire(&mut c.window, arrived);
        expire(&mut c.accepted_window, arrived);
        c.window.push_back(arrived);
        c.max_window = c.max_window.max(c.window.len());
        let counted = if fake.count_refused {
            c.window.len()
        } else {
            c.accepted_window.len() + 1
        };
        if to.is_none() {
            c.malformed += 1;
            Verdict::Malformed
        } else if counted > fake.cap_mps {
            c.throttled += 1;
            c.throttle_log
                .push((unix_ms(), to.clone().unwrap_or_default()));
            Verdict::Throttle
        } else if let Some(since) = to
            .as_ref()
            .filter(|_| !fake.pair_window.is_zero())
            .and_then(|to| c.last_accept_to.get(to))
            .map(|t| arrived.duration_since(*t))
            .filter(|since| *since < fake.pair_window)
        {
            c.pair_limited += 1;
            let since_ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
            c.pair_log
                .push((unix_ms(), to.clone().unwrap_or_default(), since_ms));
            Verdict::PairLimited
        } else {
            if !fake.pair_window.is_zero()
                && let Some(to) = &to
            {
                c.last_accept_to.insert(to.clone(), arrived);
            }
            c.accepted += 1;
            c.accepted_window.push_back(arrived);
            c.max_accepted_window = c.max_accepted_window.max(c.accepted_window.len());
            let now = unix_ms();
            c.first_accept_ms.get_or_insert(now);
            c.last_accept_ms = Some(now);
            c.accept_log.push((now, to.clone().unwrap_or_default()));
            if let Some(text) = text
                && !c.bodies.insert(text)
            {
                c.duplicates += 1;
            }
            Verdict::Accept
        }
    };

    tokio::time::sleep_until((arrived + fake.latency).into()).await;
    match verdict {
        Verdict::Accept => {
            let to = to.unwrap_or_default();
            let n = fake.next_id.fetch_add(1, Ordering::Relaxed);
            let wamid = format!("wamid.HBgLMTQxNTU1NTAxMjMVAgARGBI{n:016X}");
            (
                StatusCode::OK,
                Json(json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": wamid}],
                })),
            )
        }
        Verdict::Throttle => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": {
                    "message": "(#130429) Rate limit hit",
                    "type": "OAuthException",
                    "code": 130_429,
                    "error_data": {
                        "messaging_product": "whatsapp",
                        "details": "Cloud API message throughput has been reached."
                    },
                    "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
                }
            })),
        ),
        Verdict::PairLimited => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": {
                    "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                    "type": "OAuthException",
                    "code": 131_056,
                    "error_data": {
                        "messaging_product": "whatsapp",
                        "details": "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."
                    },
                    "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
                }
            })),
        ),
        Verdict::Malformed => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": {
                    "message": "(#100) Invalid parameter",
                    "type": "OAuthException",
                    "code": 100,
                    "error_data": {
                        "messaging_product": "whatsapp",
                        "details": "The request body is not a message with a recipient."
                    },
                    "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
                }
            })),
        ),
    }
}

async fn stats(State(fake): State<Arc<Fake>>) -> Json<Value> {
    let c = fake.counters();
    Json(json!({
        "requests": c.requests,
        "accepted": c.accepted,
        "throttled_130429": c.throttled,
        "pair_limited_131056": c.pair_limited,
        "malformed": c.malformed,
        "unique_bodies": c.bodies.len(),
        "duplicates": c.duplicates,
        "first_accept_ms": c.first_accept_ms,
        "last_accept_ms": c.last_accept_ms,
        "max_window_1s": c.max_window,
        "max_accepted_window_1s": c.max_accepted_window,
        "cap_mps": fake.cap_mps,
        "window_counts": if fake.count_refused { "all" } else { "accepted" },
        "latency_ms": u64::try_from(fake.latency.as_millis()).unwrap_or(u64::MAX),
        "pair_window_ms": u64::try_from(fake.pair_window.as_millis()).unwrap_or(u64::MAX),
    }))
}

async fn accepts(State(fake): State<Arc<Fake>>) -> Json<Value> {
    let c = fake.counters();
    Json(json!({
        "accepts": c.accept_log,
        "throttled": c.throttle_log,
        "pair_limited": c.pair_log,
    }))
}

async fn reset(State(fake): State<Arc<Fake>>) -> StatusCode {
    *fake.counters() = Counters::default();
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let settings = match Settings::from_env_and_args() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench_graph_fake: {e}");
            std::process::exit(2);
        }
    };
    let fake = Arc::new(Fake {
        latency: settings.latency,
        cap_mps: settings.cap_mps,
        count_refused: settings.count_refused,
        pair_window: settings.pair_window,
        next_id: AtomicU64::new(unix_ms() << 20),
        counters: Mutex::new(Counters::default()),
    });
    let app = Router::new()
        .route("/{version}/{phone_number_id}/messages", post(send))
        .route("/stats", get(stats))
        .route("/accepts", get(accepts))
        .route("/reset", post(reset))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port))
        .await
        .expect("bind the fake's port");
    println!("listening on {}", listener.local_addr().expect("bound"));
    axum::serve(listener, app).await.expect("serve");
}
