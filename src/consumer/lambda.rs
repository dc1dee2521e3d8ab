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
//! Decisions map to Lambda's acknowledgements by the one table
//! ([`Decision::ack`](crate::delivery::Decision::ack)), carried out as the
//! poller does ([`super::sqs`]): delivered and given up → success; retry → its
//! visibility set to the delay and the record in `batchItemFailures`; a hold
//! that does not count → a delayed copy replaces it (success); dead letter →
//! moved to the queue's dead-letter queue now (reported as a failure only if
//! that move fails, so the redrive policy still catches it).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::dead_letter::DeadLetterQueues;
use super::sqs;
use crate::clock::now_ms;
use crate::contract::is_fifo;
use crate::delivery::{Ack, Pipeline};

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
        // SNS tells an invocation nothing of its earlier attempts: Lambda's
        // asynchronous retries (up to two) bound them, and its on-failure
        // destination is the dead letter.
        let decision = pipeline.deliver_payload(&record.sns.message, 1).await;
        if !matches!(decision.ack(), Ack::Remove { .. }) {
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
    let fifo = event
        .records
        .first()
        .and_then(|r| r.event_source_arn.as_deref())
        .is_some_and(is_fifo);
    let mut lanes = sqs::lanes(event.records, fifo, |r| {
        r.attributes.get("MessageGroupId").cloned()
    });
    sqs::high_first(&mut lanes, fifo, |r| r.body.as_deref());
    let lane = Lane {
        pipeline: consumer.pipeline.clone(),
        dead_letters: consumer.dead_letters.clone(),
        slots: Arc::new(Semaphore::new(sqs::hold_target(&consumer.pipeline))),
        cutoff,
        // The same cutoff as a pacer deadline: a record whose pacing slot
        // would come later is not sent (it is reported for retry).
        pacing_deadline: cutoff.map(|c| {
            tokio::time::Instant::now() + Duration::from_millis((c - now_ms()).max(0) as u64)
        }),
        fifo,
    };
    let mut running = JoinSet::new();
    for records in lanes {
        running.spawn(lane.clone().run(records));
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

/// What each lane of an SQS event shares.
#[derive(Clone)]
struct Lane {
    pipeline: Arc<Pipeline>,
    dead_letters: Arc<DeadLetterQueues>,
    /// While only a circuit's probe may go, one record at a time.
    slots: Arc<Semaphore>,
    cutoff: Option<i64>,
    pacing_deadline: Option<tokio::time::Instant>,
    fifo: bool,
}

impl Lane {
    /// Delivers a lane's records in order; returns those to report as
    /// failures. A failure stops the lane: on FIFO the group's later records
    /// wait behind it.
    async fn run(self, records: Vec<(usize, SqsMessage)>) -> Vec<(usize, String)> {
        let mut failed = Vec::new();
        let mut stop = false;
        for (index, record) in records {
            let id = record.message_id.clone().unwrap_or_default();
            if stop || past(self.cutoff) {
                failed.push((index, id));
                continue;
            }
            let _slot = self
                .slots
                .acquire()
                .await
                .expect("the semaphore is never closed");
            // The wait for a slot may have taken us past the cutoff.
            if past(self.cutoff) || !self.deliver(&record).await {
                failed.push((index, id));
                stop = true;
            }
        }
        failed
    }

    /// Delivers one SQS record and carries out the decision's
    /// acknowledgement; true when it is done with (reported as a success).
    async fn deliver(&self, record: &SqsMessage) -> bool {
        let attempt = sqs::attempt(
            record
                .attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str),
            record
                .message_attributes
                .get(sqs::ATTEMPTS_BEFORE)
                .and_then(|a| a.string_value.as_deref()),
        );
        let body = record.body.as_deref().unwrap_or_default();
        let decision = self
            .pipeline
            .deliver_payload_before(body, attempt, self.pacing_deadline)
            .await;
        let ack = decision.ack();
        if matches!(ack, Ack::Remove { .. }) {
            return true;
        }
        let dead_letters = &self.dead_letters;
        let (Some(arn), Some(receipt_handle)) = (&record.event_source_arn, &record.receipt_handle)
        else {
            tracing::error!(
                "the record names no source queue or receipt handle; reported for another attempt"
            );
            return false;
        };
        let Some(queue_url) = dead_letters.queue_url_for_arn(arn).await else {
            return false;
        };
        let received = sqs::Received {
            queue_url: &queue_url,
            receipt_handle,
            message_id: record.message_id.as_deref().unwrap_or("unknown"),
            body,
            attempt,
            fifo: self.fifo,
        };
        let sqs = dead_letters.client().await;
        sqs::carry_out(sqs, dead_letters, received, ack).await == sqs::Left::Delete
    }
}

fn item_failure(id: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    failure
}
