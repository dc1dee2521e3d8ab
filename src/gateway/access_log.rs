//! One log line per request, written when the response leaves.
//!
//! Handlers and middleware leave what they learned (the key's id, the message
//! id, the error) in the response's extensions, and [`log_request`] writes it
//! all as one event. No per-request span is created: with the JSON formatter a
//! span costs more than the line itself, and it was the single largest cost
//! on the gateway's hot path (measured with `bench/run.py`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

/// What a request did, for its log line. Inserted into the response's extensions.
#[derive(Debug, Clone, Default)]
pub struct AccessRecord {
    /// The API key's id (never the key), once authenticated.
    pub api_key_id: Option<std::sync::Arc<str>>,
    /// The accepted message's id.
    pub message_id: Option<Uuid>,
    /// The recipient, masked.
    pub to: Option<String>,
    /// The WhatsApp message type.
    pub message_type: Option<&'static str>,
    /// The queue's id for the published message (SNS `MessageId`).
    pub queue_message_id: Option<String>,
    /// True when an `Idempotency-Key` replay answered without publishing.
    pub idempotent_replay: bool,
}

impl AccessRecord {
    /// The record of an `Idempotency-Key` replay: nothing published, only
    /// the message id (a single send's) answered again.
    pub fn replay(message_id: Option<Uuid>) -> Self {
        Self {
            message_id,
            idempotent_replay: true,
            ..Self::default()
        }
    }
}

/// An error to report in the request's log line, at the given level.
#[derive(Debug, Clone)]
pub struct ErrorRecord {
    /// `error` for what an operator must fix or a bug; `warn` for transient trouble.
    pub severe: bool,
    /// The stable problem code.
    pub code: &'static str,
    /// What happened, for operators (may name topics or paths; never secrets).
    pub message: String,
    /// The underlying cause, rendered once.
    pub cause: Option<String>,
}

impl ErrorRecord {
    /// A transient failure of a store: its message and causes.
    pub fn transient(code: &'static str, error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            severe: false,
            code,
            message: error.to_string(),
            cause: crate::telemetry::causes(error),
        }
    }
}

/// Adds the key's id to a response's access record.
pub fn record_key_id(response: &mut Response, key_id: std::sync::Arc<str>) {
    let record = response
        .extensions_mut()
        .get_or_insert_default::<AccessRecord>();
    record.api_key_id = Some(key_id);
}

/// Writes the request's one log line: method, path, status, latency, request id,
/// and whatever the handlers recorded.
pub async fn log_request(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    // Both kept by reference count, not copied: `MatchedPath` holds an
    // `Arc<str>` and a header value shares its bytes.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let path = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let request_id_header = request.headers().get("x-request-id").cloned();
    let request_id = request_id_header
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let latency_us = elapsed.as_micros() as u64;
    let status = response.status().as_u16();
    crate::metrics::request(path, status, elapsed.as_secs_f64());
    // Fields are borrowed from the response's record, not copied: this runs per request.
    let none = AccessRecord::default();
    let r = response.extensions().get::<AccessRecord>().unwrap_or(&none);
    macro_rules! line {
        ($level:ident, $($extra:tt)*) => {
            tracing::$level!(
                %method, path = %path, status, latency_us, request_id = %request_id,
                api_key_id = r.api_key_id.as_deref(), message_id = r.message_id.map(tracing::field::display),
                to = r.to.as_deref(), message_type = r.message_type, queue_message_id = r.queue_message_id.as_deref(),
                idempotent_replay = r.idempotent_replay,
                $($extra)*
            )
        };
    }
    match response.extensions().get::<ErrorRecord>() {
        None => line!(info, "request"),
        Some(e) if e.severe => {
            line!(error, error.code = e.code, error.message = %e.message, error.cause = e.cause.as_deref(), "request failed")
        }
        Some(e) => {
            line!(warn, error.code = e.code, error.message = %e.message, error.cause = e.cause.as_deref(), "request failed")
        }
    }
    response
}
