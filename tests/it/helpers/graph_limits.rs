//! A fake Graph API that enforces what Meta enforces per sending number: a
//! throughput cap over any one-second window (130429 past it) and the pair
//! rate, one message per recipient per 6 s (131056). It answers with Meta's
//! documented payloads and records every arrival, so a test can check what
//! the provider saw from several consumers together.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::time::Instant;

const PAIR_WINDOW: Duration = Duration::from_secs(6);

#[derive(Default)]
struct Seen {
    window: VecDeque<Instant>,
    max_window: usize,
    accepted: usize,
    throttled: usize,
    pair_limited: usize,
    last_to: HashMap<String, Instant>,
    bodies: Vec<Value>,
}

/// The fake and what it saw.
#[derive(Clone)]
pub struct LimitedGraph {
    pub uri: String,
    cap: usize,
    seen: Arc<Mutex<Seen>>,
}

impl LimitedGraph {
    /// Serves on a free loopback port, refusing past `cap` per second.
    pub async fn start(cap: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let fake = Self {
            uri,
            cap,
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/{version}/{number}/messages", post(send))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// The most requests that arrived within one second.
    pub fn max_window(&self) -> usize {
        self.seen.lock().unwrap().max_window
    }

    /// Messages accepted, refused for throughput (130429) and for the pair rate (131056).
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.seen.lock().unwrap();
        (s.accepted, s.throttled, s.pair_limited)
    }

    /// The bodies accepted, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.seen.lock().unwrap().bodies.clone()
    }
}

async fn send(
    State(fake): State<LimitedGraph>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let now = Instant::now();
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    let mut s = fake.seen.lock().unwrap();
    while s
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        s.window.pop_front();
    }
    s.window.push_back(now);
    s.max_window = s.max_window.max(s.window.len());
    if s.window.len() > fake.cap {
        s.throttled += 1;
        return error(130_429, "(#130429) Rate limit hit");
    }
    if s.last_to
        .get(&to)
        .is_some_and(|t| now.duration_since(*t) < PAIR_WINDOW)
    {
        s.pair_limited += 1;
        return error(
            131_056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        );
    }
    s.last_to.insert(to.clone(), now);
    s.accepted += 1;
    let n = s.accepted;
    s.bodies.push(body);
    (
        StatusCode::OK,
        Json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": format!("wamid.limited{n:08}")}],
        })),
    )
}

fn error(code: i64, message: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(
            json!({"error": {"message": message, "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": "AbCdEf"}}),
        ),
    )
}
