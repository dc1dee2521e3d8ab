//! The Lambda handler: SNS events (topic → function) and SQS events
//! (topic → queue → function, raw delivery or SNS's JSON wrapper).

use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::delivery::{Outcome, Pipeline};
use crate::embedded::now_ms;

/// Kept free before the invocation's deadline beyond one provider call: time
/// to build and return the response.
const DEADLINE_MARGIN_MS: i64 = 1000;

/// A failed invocation. Lambda (or SNS behind it) retries the event, and after
/// its retries sends it to the function's on-failure destination or DLQ.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// A delivery failed in a way that may succeed later, or the envelope was
    /// unreadable and must reach the dead-letter path.
    #[error("{failed} of {total} record(s) need another attempt")]
    Retryable { failed: usize, total: usize },
    /// The event is neither an SNS nor an SQS event.
    #[error("unrecognised event: {0}")]
    UnknownEvent(String),
}

impl From<InvocationError> for Diagnostic {
    fn from(e: InvocationError) -> Self {
        let error_type = match e {
            InvocationError::Retryable { .. } => "Retryable",
            InvocationError::UnknownEvent(_) => "NonRetryable",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Handles one Lambda event of either kind. Returns the SQS partial-batch
/// response for SQS events and `null` for SNS events.
pub async fn handle_event(
    event: LambdaEvent<Value>,
    pipeline: &Pipeline,
) -> Result<Value, InvocationError> {
    let cutoff = start_cutoff(event.context.deadline, pipeline);
    let payload = event.payload;
    let source = payload
        .get("Records")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("EventSource").or_else(|| r.get("eventSource")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match source.as_str() {
        "aws:sns" => {
            let event: SnsEvent = serde_json::from_value(payload)
                .map_err(|e| InvocationError::UnknownEvent(e.to_string()))?;
            handle_sns(event, pipeline, cutoff).await?;
            Ok(Value::Null)
        }
        "aws:sqs" => {
            let event: SqsEvent = serde_json::from_value(payload)
                .map_err(|e| InvocationError::UnknownEvent(e.to_string()))?;
            let response = handle_sqs(event, pipeline, cutoff).await;
            Ok(serde_json::to_value(response).expect("a batch response always serialises"))
        }
        other => Err(InvocationError::UnknownEvent(format!(
            "event source {other:?} is not aws:sns or aws:sqs"
        ))),
    }
}

/// The last moment (Unix ms) to start a record so that it ends before the
/// invocation's deadline: the deadline less one provider call and a margin.
/// `None` when there is no deadline (a `Context` built by a test).
pub fn start_cutoff(deadline_ms: u64, pipeline: &Pipeline) -> Option<i64> {
    (deadline_ms > 0).then(|| {
        deadline_ms as i64 - pipeline.call_timeout().as_millis() as i64 - DEADLINE_MARGIN_MS
    })
}

fn past(cutoff: Option<i64>) -> bool {
    cutoff.is_some_and(|c| now_ms() > c)
}

/// SNS → Lambda: SNS invokes asynchronously, so the only way to get a retry is to
/// fail the invocation. Permanent failures are logged and acknowledged.
pub async fn handle_sns(
    event: SnsEvent,
    pipeline: &Pipeline,
    cutoff: Option<i64>,
) -> Result<(), InvocationError> {
    let total = event.records.len();
    let mut failed = 0;
    for record in event.records {
        if past(cutoff) {
            failed += 1;
            continue;
        }
        let outcome = pipeline.deliver_payload(&record.sns.message, 1).await;
        if matches!(outcome, Outcome::Retry { .. } | Outcome::Rejected { .. }) {
            failed += 1;
        }
    }
    if failed > 0 {
        Err(InvocationError::Retryable { failed, total })
    } else {
        Ok(())
    }
}

/// SQS → Lambda: report exactly the records that need another attempt in
/// `batchItemFailures`; the queue's redrive policy dead-letters them after its
/// max receive count. On a FIFO queue, stop at the first failure and report it
/// and every later record, so that order within a group holds.
///
/// No record is started after `cutoff`: those left are reported as failures
/// without being sent, so that a timed-out invocation never makes Lambda
/// retry records this invocation already delivered.
pub async fn handle_sqs(
    event: SqsEvent,
    pipeline: &Pipeline,
    cutoff: Option<i64>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut stop = false;
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let fifo = record
            .event_source_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(".fifo"));
        if stop || past(cutoff) {
            response.batch_item_failures.push(item_failure(id));
            continue;
        }
        let attempt = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let outcome = pipeline
            .deliver_payload(record.body.as_deref().unwrap_or_default(), attempt)
            .await;
        if matches!(outcome, Outcome::Retry { .. } | Outcome::Rejected { .. }) {
            response.batch_item_failures.push(item_failure(id));
            stop = fifo;
        }
    }
    response
}

fn item_failure(id: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    failure
}
