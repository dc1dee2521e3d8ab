//! The Lambda handler: SNS events (topic → function) and SQS events
//! (topic → queue → function, raw delivery or SNS's JSON wrapper).
//!
//! An SQS batch's records are delivered concurrently, up to the pipeline's
//! in-flight target (the same pacer and ceiling as the other transports), so
//! Lambda bills about one provider latency per batch rather than one per
//! record. On a FIFO queue the records of one message group go in order, one
//! after another, and groups run in parallel; a group stops at its first
//! failure and reports that record and its later ones.
//!
//! Decisions map to Lambda's acknowledgements: delivered and given up →
//! success; retry → the record is in `batchItemFailures`; dead letter → moved to
//! the queue's dead-letter queue now (reported as a failure only if that move
//! fails, so the redrive policy still catches it).

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::dead_letter::DeadLetterQueues;
use crate::clock::now_ms;
use crate::contract::is_fifo;
use crate::delivery::{Decision, Pipeline};

/// Kept free before the invocation's deadline beyond one provider call: time
/// to build and return the response.
const DEADLINE_MARGIN_MS: i64 = 1000;

/// A failed invocation. Lambda (or SNS behind it) retries the event, and after
/// its retries sends it to the function's on-failure destination or DLQ.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// A delivery failed in a way that may succeed later, or the envelope must
    /// reach the dead-letter path (the function's on-failure destination).
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

/// What a Lambda invocation needs, built once per execution environment.
#[derive(Debug)]
pub struct LambdaConsumer {
    /// The delivery pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Where dead letters go (the SQS client is built on first use).
    pub dead_letters: Arc<DeadLetterQueues>,
}

impl LambdaConsumer {
    /// A consumer over `pipeline`, finding dead-letter queues lazily.
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            pipeline,
            dead_letters: Arc::default(),
        }
    }
}

/// Handles one Lambda event of either kind. Returns the SQS partial-batch
/// response for SQS events and `null` for SNS events.
pub async fn handle_event(
    event: LambdaEvent<Value>,
    consumer: &LambdaConsumer,
) -> Result<Value, InvocationError> {
    let result = dispatch(event, consumer).await;
    // Delivery metrics for CloudWatch (Embedded Metric Format): one line per
    // channel and outcome, on stdout, which Lambda sends to the log stream.
    for line in crate::metrics::take_emf(chrono::Utc::now().timestamp_millis()) {
        println!("{line}");
    }
    result
}

async fn dispatch(
    event: LambdaEvent<Value>,
    consumer: &LambdaConsumer,
) -> Result<Value, InvocationError> {
    let cutoff = start_cutoff(event.context.deadline, &consumer.pipeline);
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
            handle_sns(event, &consumer.pipeline, cutoff).await?;
            Ok(Value::Null)
        }
        "aws:sqs" => {
            let event: SqsEvent = serde_json::from_value(payload)
                .map_err(|e| InvocationError::UnknownEvent(e.to_string()))?;
            let response = handle_sqs(event, consumer, cutoff).await;
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
/// fail the invocation; the same goes for a dead letter, which then reaches the
/// function's on-failure destination. Permanent failures are logged and acknowledged.
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
        let decision = pipeline.deliver_payload(&record.sns.message, 1).await;
        if matches!(
            decision,
            Decision::Retry { .. } | Decision::DeadLetter { .. }
        ) {
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
/// max receive count.
///
/// No record is started after `cutoff`: those left are reported as failures
/// without being sent, so that a timed-out invocation never makes Lambda
/// retry records this invocation already delivered.
pub async fn handle_sqs(
    event: SqsEvent,
    consumer: &LambdaConsumer,
    cutoff: Option<i64>,
) -> SqsBatchResponse {
    // Lanes run in parallel; the records of one lane run in order. Standard
    // queues: one lane per record. FIFO: one lane per message group.
    let mut lanes: Vec<Vec<(usize, SqsMessage)>> = Vec::new();
    let mut lane_of_group: HashMap<String, usize> = HashMap::new();
    for (index, record) in event.records.into_iter().enumerate() {
        let fifo = record.event_source_arn.as_deref().is_some_and(is_fifo);
        let group = record.attributes.get("MessageGroupId").cloned();
        match group.filter(|_| fifo) {
            Some(group) => {
                let lane = *lane_of_group.entry(group).or_insert_with(|| {
                    lanes.push(Vec::new());
                    lanes.len() - 1
                });
                lanes[lane].push((index, record));
            }
            None if fifo => {
                // A FIFO record without its group (a hand-made event): keep
                // the whole batch in one lane, in order.
                let lane = *lane_of_group.entry(String::new()).or_insert_with(|| {
                    lanes.push(Vec::new());
                    lanes.len() - 1
                });
                lanes[lane].push((index, record));
            }
            None => lanes.push(vec![(index, record)]),
        }
    }

    // While only a circuit's probe may go, one record at a time.
    let slots = Arc::new(Semaphore::new(
        consumer
            .pipeline
            .take_limit()
            .unwrap_or_else(|| consumer.pipeline.in_flight_target()),
    ));
    // The same cutoff as a pacer deadline: a record whose pacing slot would
    // come later is not sent (it is reported for retry).
    let pacing_deadline = cutoff.map(|c| {
        tokio::time::Instant::now() + std::time::Duration::from_millis((c - now_ms()).max(0) as u64)
    });
    let mut running = JoinSet::new();
    for lane in lanes {
        let (pipeline, dead_letters, slots) = (
            consumer.pipeline.clone(),
            consumer.dead_letters.clone(),
            slots.clone(),
        );
        running.spawn(async move {
            let mut failed = Vec::new();
            let mut stop = false;
            for (index, record) in lane {
                let id = record.message_id.clone().unwrap_or_default();
                if stop || past(cutoff) {
                    failed.push((index, id));
                    continue;
                }
                let _slot = slots
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                // The wait for a slot may have taken us past the cutoff.
                if past(cutoff) {
                    failed.push((index, id));
                    stop = true;
                    continue;
                }
                if !deliver_record(&pipeline, &dead_letters, &record, pacing_deadline).await {
                    failed.push((index, id));
                    // FIFO: the group's later records wait behind this one.
                    stop = true;
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(lane) = running.join_next().await {
        failed.extend(lane.expect("a delivery task does not panic"));
    }
    failed.sort_unstable_by_key(|(index, _)| *index);
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed.into_iter().map(|(_, id)| item_failure(id)).collect();
    response
}

/// Delivers one SQS record; true when it is done with (no retry needed).
async fn deliver_record(
    pipeline: &Pipeline,
    dead_letters: &DeadLetterQueues,
    record: &SqsMessage,
    pacing_deadline: Option<tokio::time::Instant>,
) -> bool {
    let attempt = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let body = record.body.as_deref().unwrap_or_default();
    match pipeline
        .deliver_payload_before(body, attempt, pacing_deadline)
        .await
    {
        Decision::Delivered { .. } | Decision::GiveUp { .. } => true,
        Decision::Retry { .. } => false,
        Decision::DeadLetter { .. } => {
            let moved = match &record.event_source_arn {
                Some(arn) => match dead_letters.queue_url_for_arn(arn).await {
                    Some(url) => {
                        let id = record.message_id.as_deref().unwrap_or("unknown");
                        dead_letters.send(&url, body, id).await
                    }
                    None => Err("cannot find the source queue".to_owned()),
                },
                None => Err("the record names no source queue".to_owned()),
            };
            if let Err(e) = &moved {
                tracing::error!(error.message = %e, "could not move the record to the dead-letter queue; reported for the redrive policy instead");
            }
            moved.is_ok()
        }
    }
}

fn item_failure(id: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    failure
}
