//! A zero-latency SNS endpoint for benchmarks and tests: answers `Publish`,
//! `PublishBatch` and `GetTopicAttributes` in the AWS query protocol (form-encoded
//! requests, XML responses, as aws-sdk-sns speaks it) and counts calls and
//! messages. It is not an emulator: it stores nothing.
//!
//! Scripted faults, for tests of partial batch failures: an entry whose message
//! contains `FAIL-PERMANENT` fails with `InvalidParameter` (sender fault); one
//! containing `FAIL-TRANSIENT-ONCE` fails with `InternalError` the first time
//! that exact message is seen and succeeds after; while [`Sink::fail_all`] is
//! set, every entry fails with `InternalError` (SNS failing for a while).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Form, Json, Router};

/// Counters, readable at `GET /stats`.
#[derive(Default)]
pub struct Sink {
    pub publish_calls: AtomicU64,
    pub batch_calls: AtomicU64,
    pub messages: AtomicU64,
    pub failed_entries: AtomicU64,
    /// While true, every `PublishBatch` entry fails with `InternalError`.
    pub fail_all: std::sync::atomic::AtomicBool,
    seen_transient: std::sync::Mutex<HashSet<String>>,
    bodies: std::sync::Mutex<Vec<String>>,
    keep_bodies: bool,
}

impl Sink {
    /// A sink; with `keep_bodies`, published messages are kept for inspection (tests).
    pub fn new(keep_bodies: bool) -> Arc<Self> {
        Arc::new(Self {
            keep_bodies,
            ..Self::default()
        })
    }

    /// The messages published so far (only with `keep_bodies`).
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// SNS calls made so far (Publish + PublishBatch).
    pub fn calls(&self) -> u64 {
        self.publish_calls.load(Ordering::Relaxed) + self.batch_calls.load(Ordering::Relaxed)
    }
}

/// The sink's routes: `POST /` (the SNS API) and `GET /stats`.
pub fn router(sink: Arc<Sink>) -> Router {
    Router::new()
        .route("/", post(api))
        .route("/stats", get(stats))
        .with_state(sink)
}

async fn stats(State(sink): State<Arc<Sink>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "publishCalls": sink.publish_calls.load(Ordering::Relaxed),
        "batchCalls": sink.batch_calls.load(Ordering::Relaxed),
        "messages": sink.messages.load(Ordering::Relaxed),
        "failedEntries": sink.failed_entries.load(Ordering::Relaxed),
    }))
}

fn xml(body: String) -> axum::response::Response {
    ([("content-type", "text/xml")], body).into_response()
}

async fn api(
    State(sink): State<Arc<Sink>>,
    Form(form): Form<Vec<(String, String)>>,
) -> axum::response::Response {
    let action = form
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let request_id = uuid::Uuid::new_v4();
    match action {
        "Publish" => {
            sink.publish_calls.fetch_add(1, Ordering::Relaxed);
            sink.messages.fetch_add(1, Ordering::Relaxed);
            if sink.keep_bodies
                && let Some((_, m)) = form.iter().find(|(k, _)| k == "Message")
            {
                sink.bodies.lock().unwrap().push(m.clone());
            }
            xml(format!(
                r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>{}</MessageId></PublishResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></PublishResponse>"#,
                uuid::Uuid::new_v4()
            ))
        }
        "PublishBatch" => {
            sink.batch_calls.fetch_add(1, Ordering::Relaxed);
            // PublishBatchRequestEntries.member.N.Id / .Message
            let mut entries: BTreeMap<u32, (String, String)> = BTreeMap::new();
            for (k, v) in &form {
                let Some(rest) = k.strip_prefix("PublishBatchRequestEntries.member.") else { continue };
                let Some((n, field)) = rest.split_once('.') else { continue };
                let Ok(n) = n.parse() else { continue };
                let slot = entries.entry(n).or_default();
                match field {
                    "Id" => slot.0 = v.clone(),
                    "Message" => slot.1 = v.clone(),
                    _ => {}
                }
            }
            let (mut ok, mut failed) = (String::new(), String::new());
            for (id, message) in entries.values() {
                let fault = if sink.fail_all.load(Ordering::Relaxed) {
                    Some(("InternalError", false))
                } else if message.contains("FAIL-PERMANENT") {
                    Some(("InvalidParameter", true))
                } else if message.contains("FAIL-TRANSIENT-ONCE") && sink.seen_transient.lock().unwrap().insert(message.clone()) {
                    Some(("InternalError", false))
                } else {
                    None
                };
                match fault {
                    Some((code, sender)) => {
                        sink.failed_entries.fetch_add(1, Ordering::Relaxed);
                        failed.push_str(&format!(
                            "<member><Id>{id}</Id><Code>{code}</Code><Message>scripted</Message><SenderFault>{sender}</SenderFault></member>"
                        ));
                    }
                    None => {
                        sink.messages.fetch_add(1, Ordering::Relaxed);
                        if sink.keep_bodies {
                            sink.bodies.lock().unwrap().push(message.clone());
                        }
                        ok.push_str(&format!("<member><Id>{id}</Id><MessageId>{}</MessageId></member>", uuid::Uuid::new_v4()));
                    }
                }
            }
            xml(format!(
                r#"<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult><Successful>{ok}</Successful><Failed>{failed}</Failed></PublishBatchResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></PublishBatchResponse>"#
            ))
        }
        "GetTopicAttributes" => xml(format!(
            r#"<GetTopicAttributesResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><GetTopicAttributesResult><Attributes></Attributes></GetTopicAttributesResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></GetTopicAttributesResponse>"#
        )),
        other => (
            axum::http::StatusCode::BAD_REQUEST,
            format!(
                r#"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>{other} is not supported by the sink</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"#
            ),
        )
            .into_response(),
    }
}
