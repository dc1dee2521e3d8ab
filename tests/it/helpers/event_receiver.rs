//! The application's side of events: a loopback HTTP receiver that verifies
//! each Standard Webhooks signature (with its own HMAC, not Herald's), keeps
//! what it received, and fails on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The secret as Standard Webhooks writes it, and its key bytes.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Inner {
    /// Verified events, in arrival order (duplicates included).
    events: Mutex<Vec<Value>>,
    /// Requests whose signature did not verify.
    bad_signatures: AtomicUsize,
    /// The next this many requests are answered 500.
    fail_next: AtomicUsize,
    /// Every request, answered or failed.
    requests: AtomicUsize,
}

/// A receiver listening on 127.0.0.1.
#[derive(Clone)]
pub struct EventReceiver {
    pub url: String,
    inner: Arc<Inner>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sig)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        return false;
    };
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    fresh && sig.split(' ').any(|s| s == expected)
}

impl EventReceiver {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener).await
    }

    /// Starts on `listener` (a test that restarts the receiver keeps its port).
    pub async fn serve(listener: tokio::net::TcpListener) -> Self {
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let inner = Arc::new(Inner::default());
        let state = inner.clone();
        let app = Router::new().route(
            "/events",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    state.requests.fetch_add(1, Ordering::SeqCst);
                    if !verify(&headers, &body) {
                        state.bad_signatures.fetch_add(1, Ordering::SeqCst);
                        return StatusCode::UNAUTHORIZED;
                    }
                    let failing = state
                        .fail_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if failing {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(
                        headers["webhook-id"].to_str().unwrap(),
                        event["eventId"].as_str().unwrap()
                    );
                    state.events.lock().unwrap().push(event);
                    StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Answers the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    pub fn bad_signatures(&self) -> usize {
        self.inner.bad_signatures.load(Ordering::SeqCst)
    }

    /// The events received so far.
    pub fn events(&self) -> Vec<Value> {
        self.inner.events.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the events received, up to `within`.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        super::eventually("the events awaited", within, async || {
            Some(self.events()).filter(|events| done(events))
        })
        .await
    }
}
