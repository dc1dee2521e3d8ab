//! What both SQS transports (the poller and Lambda's SQS events) share: the
//! attempt number of a received message, FIFO lanes, how many messages to hold,
//! and carrying out an [`Ack`] against the queue.
//!
//! A hold that must not count ([`Ack::Retry`] with `counted: false`: an open
//! circuit, the pair rate, no pacing slot, an account alert) cannot give back
//! the receive SQS already counted toward the redrive policy. On a standard
//! queue the message is therefore replaced: a copy is sent with
//! `DelaySeconds` (at most 900 s) and the message attribute
//! [`ATTEMPTS_BEFORE`] = the attempts counted so far, then the original is
//! deleted. Copy first, delete second: if the delete fails the message comes
//! back twice rather than not at all. A FIFO queue cannot delay one message
//! and a copy would go behind its group, so there a hold counts like a retry
//! (order first).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{BatchResultErrorEntry, MessageAttributeValue};

use super::dead_letter::DeadLetterQueues;
use crate::contract::Priority;
use crate::delivery::{Ack, Pipeline};

/// The message attribute carrying the attempts a replaced message had made.
pub const ATTEMPTS_BEFORE: &str = "HeraldAttemptsBefore";
/// SQS's longest per-message delay (15 minutes).
const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's largest visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// The attempt a receive is: the attempts a replaced message carried plus
/// SQS's `ApproximateReceiveCount` (1 when either cannot be read).
pub fn attempt(receive_count: Option<&str>, attempts_before: Option<&str>) -> u32 {
    let received: u32 = receive_count.and_then(|c| c.parse().ok()).unwrap_or(1);
    let before: u32 = attempts_before.and_then(|c| c.parse().ok()).unwrap_or(0);
    before.saturating_add(received.max(1))
}

/// How many messages a transport should hold now: one while only a circuit's
/// probe may go (each extra one would spend a receive for nothing), else the
/// pipeline's in-flight target.
pub fn hold_target(pipeline: &Pipeline) -> usize {
    pipeline
        .take_limit()
        .unwrap_or_else(|| pipeline.in_flight_target())
}

/// Splits received messages into lanes that run in parallel, each in order:
/// one lane per message on a standard queue, one per message group on a FIFO
/// queue (a FIFO message without a group joins one shared lane). Each item
/// keeps its index in `messages`.
pub fn lanes<T>(
    messages: impl IntoIterator<Item = T>,
    fifo: bool,
    group_of: impl Fn(&T) -> Option<String>,
) -> Vec<Vec<(usize, T)>> {
    let mut lanes: Vec<Vec<(usize, T)>> = Vec::new();
    let mut lane_of_group: HashMap<String, usize> = HashMap::new();
    for (index, message) in messages.into_iter().enumerate() {
        if !fifo {
            lanes.push(vec![(index, message)]);
            continue;
        }
        let group = group_of(&message).unwrap_or_default();
        let lane = *lane_of_group.entry(group).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[lane].push((index, message));
    }
    lanes
}

/// Orders a standard queue's lanes `high` first, then `normal`, then
/// `bulk` (otherwise as received): the consumer serves priority within what
/// it received (the lanes start in this order, so they take their pacing
/// slots in it). A FIFO queue's lanes keep their order.
pub fn high_first<T>(
    lanes: &mut [Vec<(usize, T)>],
    fifo: bool,
    body_of: impl Fn(&T) -> Option<&str>,
) {
    if fifo {
        return;
    }
    lanes.sort_by_cached_key(|lane| {
        lane.first()
            .and_then(|(_, m)| body_of(m))
            .and_then(|b| crate::delivery::envelope_from_queue_body(b).ok())
            .map_or(Priority::Normal, |e| e.priority)
    });
}

/// One received message, as the acknowledgement needs it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The queue it came from.
    pub queue_url: &'a str,
    /// Its receipt handle.
    pub receipt_handle: &'a str,
    /// Its SQS message id.
    pub message_id: &'a str,
    /// Its body, as received.
    pub body: &'a str,
    /// The attempt this receive was ([`attempt`]).
    pub attempt: u32,
    /// True on a FIFO queue.
    pub fifo: bool,
}

/// What the transport still has to do after [`carry_out`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// Take the message off the queue (poller: delete it; Lambda: report
    /// success). Its replacement or dead letter, if any, is written.
    Delete,
    /// Leave it: it comes back after its visibility timeout (Lambda: report
    /// it in `batchItemFailures`).
    Keep,
}

/// Carries out `ack` for one received message, except the delete itself,
/// which the transport does (the poller batches it; Lambda reports success).
pub async fn carry_out(
    sqs: &Client,
    dead_letters: &DeadLetterQueues,
    message: Received<'_>,
    ack: Ack,
) -> Left {
    match ack {
        Ack::Remove { .. } => Left::Delete,
        Ack::Retry {
            after,
            counted: false,
        } if !message.fifo => match replace(sqs, message, after).await {
            Ok(()) => Left::Delete,
            Err(e) => {
                tracing::warn!(error.message = %crate::aws::describe(&e), "could not replace a held message; this hold counts as a receive");
                set_visibility(sqs, message, after).await;
                Left::Keep
            }
        },
        Ack::Retry { after, .. } => {
            set_visibility(sqs, message, after).await;
            Left::Keep
        }
        Ack::DeadLetter { .. } => match dead_letters
            .send(message.queue_url, message.body, message.message_id)
            .await
        {
            Ok(()) => Left::Delete,
            Err(e) => {
                tracing::error!(error.message = %e.describe(), "could not move the message to the dead-letter queue; it stays for the redrive policy");
                Left::Keep
            }
        },
    }
}

/// Sends a delayed copy of `message` carrying the attempts made before this
/// receive (this one does not count).
async fn replace(
    sqs: &Client,
    message: Received<'_>,
    after: Duration,
) -> Result<(), aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::send_message::SendMessageError>>
{
    let before = MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(message.attempt.saturating_sub(1).to_string())
        .build()
        .expect("data type is set");
    sqs.send_message()
        .queue_url(message.queue_url)
        .message_body(message.body)
        .delay_seconds(seconds(after.min(MAX_DELAY)))
        .message_attributes(ATTEMPTS_BEFORE, before)
        .send()
        .await
        .map(|_| ())
}

/// Makes the message visible again after `after` (rounded up: a 0.9 s wait
/// must not become "visible now").
pub async fn set_visibility(sqs: &Client, message: Received<'_>, after: Duration) {
    if let Err(e) = sqs
        .change_message_visibility()
        .queue_url(message.queue_url)
        .receipt_handle(message.receipt_handle)
        .visibility_timeout(seconds(after.min(MAX_VISIBILITY)))
        .send()
        .await
    {
        tracing::warn!(error.message = %crate::aws::describe(&e), "could not set the retry delay; the queue's visibility timeout applies");
    }
}

/// The receipt handles of one SQS batch call, each with its entry id: its
/// index in the batch.
pub fn numbered(handles: &[String]) -> impl Iterator<Item = (String, &String)> {
    handles.iter().enumerate().map(|(i, h)| (i.to_string(), h))
}

/// Logs what an SQS batch call over `count` messages left undone: the
/// entries SQS `refused` (how many, the first one's code), or all of them
/// when the call itself `failed`.
pub fn warn_undone<E, R>(
    result: Result<&[BatchResultErrorEntry], &SdkError<E, R>>,
    count: usize,
    refused: &str,
    failed: &str,
) where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok([]) => {}
        Ok(entries) => tracing::warn!(
            failed = entries.len(),
            code = entries[0].code.as_str(),
            "{refused}"
        ),
        Err(e) => tracing::warn!(
            error.message = %crate::aws::describe(e),
            messages = count,
            "{failed}"
        ),
    }
}

fn seconds(d: Duration) -> i32 {
    d.as_millis().div_ceil(1000) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_adds_the_carried_attempts_to_the_receive_count() {
        assert_eq!(attempt(Some("2"), None), 2);
        assert_eq!(attempt(Some("1"), Some("3")), 4);
        assert_eq!(attempt(None, None), 1);
        assert_eq!(attempt(Some("junk"), Some("junk")), 1);
        assert_eq!(attempt(Some("0"), Some("4294967295")), u32::MAX);
    }

    #[test]
    fn fifo_lanes_keep_each_group_in_order_and_standard_queues_run_each_alone() {
        let messages = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let group = |m: &(&str, i32)| Some(m.0.to_owned());
        let fifo = lanes(messages.clone(), true, group);
        let order: Vec<Vec<i32>> = fifo
            .iter()
            .map(|l| l.iter().map(|(_, m)| m.1).collect())
            .collect();
        assert_eq!(order, vec![vec![1, 3], vec![2, 5], vec![4]]);
        assert_eq!(fifo[0][1].0, 2, "each keeps its index");
        assert_eq!(lanes(messages, false, group).len(), 5);
        let body = |p: &str| {
            let mut e = crate::contract::Envelope::new(
                uuid::Uuid::now_v7(),
                crate::domain::OutboundMessage::try_from(
                    serde_json::json!({"to": "+14155550123", "message": "hi"}),
                )
                .unwrap(),
                "k",
            );
            e.priority = Priority::from_name(p).unwrap();
            e.to_json()
        };
        let received = vec![body("bulk"), body("normal"), body("high"), "garbage".into()];
        let mut ordered = lanes(received, false, |_| None);
        high_first(&mut ordered, false, |m| Some(m.as_str()));
        let order: Vec<usize> = ordered.iter().map(|l| l[0].0).collect();
        assert_eq!(
            order,
            [2, 1, 3, 0],
            "high, normal (unreadable counts as normal), bulk"
        );
        let ungrouped = lanes(vec![1, 2, 3], true, |_| None);
        assert_eq!(
            ungrouped.len(),
            1,
            "FIFO without groups: one lane, in order"
        );
    }
}
