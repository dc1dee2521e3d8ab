//! One send schedule per sending number (or Infobip account) for the whole
//! fleet: a GCRA whose "next free slot" lives in DynamoDB, booked in slices.
//!
//! Item: `pk = "pace#<provider>#<account>"`, `sk = "pace"`, `tat` (the next
//! free slot, Unix microseconds), `expiresAt`. A consumer books `k` slots
//! (`k` = the callers waiting for one and the recent demand, at most a
//! quarter of a second's worth) with one conditional `UpdateItem`:
//! `tat += k × interval` when the schedule is current (`from ≤ tat ≤ now +
//! 2 s`, `from` = now + 50 ms, a round trip's lead), or `tat = from + k ×
//! interval` when it lies before `from` (nobody sent for a while). The slots are the interval
//! apart across the fleet, exactly as one process's limiter spaces them, so
//! any one-second window at the provider sees at most the cap (with the same
//! 3 % headroom). Nobody books more than [`MAX_AHEAD`] ahead: a consumer
//! that finds the schedule that full waits, so consumers share the rate in
//! the order they ask. A consumer that dies loses only the slots it booked
//! (at most a quarter of a second); nothing is held for it.
//!
//! Cost: one write per booking: at the cap, 4 writes a second per number
//! whatever the number of consumers (`1 / (cap / 4)` writes per message, 0.05
//! at 80 msg/s), plus one failed conditional write when the schedule has to
//! be restarted after an idle spell. Consumers' clocks must agree to a few
//! milliseconds (NTP, as on AWS).

use std::time::Duration;

use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures_util::future::BoxFuture;

use super::{FleetError, FleetTable, condition_failed_item, get_n, n};
use crate::channels::pacing::{SharedError, SharedSlots};

/// How far ahead the fleet may book.
pub const MAX_AHEAD: Duration = Duration::from_secs(2);
/// The earliest slot a booking takes is this far ahead of its request: the
/// answer takes a round trip to come back, and a slot already past when it
/// arrives is dropped (the schedule would restart, and the same would happen
/// again, for as long as DynamoDB answers that slowly).
const LEAD: Duration = Duration::from_millis(50);
const SK: &str = "pace";
/// Items outlive their last booking by a day.
const KEEP_MS: i64 = 86_400_000;

/// The schedule of one sending number or account.
#[derive(Debug, Clone)]
pub struct FleetPace {
    table: FleetTable,
    pk: String,
}

/// What one booking attempt found.
enum Booking {
    /// Booked: the first slot (Unix µs) and how many.
    Booked(i64),
    /// The schedule lies in the past (or does not exist yet): restart it.
    Stale,
    /// The schedule is booked this far ahead of now (µs): wait.
    Full(i64),
}

impl FleetPace {
    /// The schedule of `account` at `provider` in `table`.
    pub fn new(table: FleetTable, provider: &str, account: &str) -> Self {
        Self {
            table,
            pk: format!("pace#{provider}#{account}"),
        }
    }

    /// Books `want` slots `interval` apart; answers the first slot's time
    /// and the count.
    pub async fn book_slots(
        &self,
        want: u32,
        interval: Duration,
    ) -> Result<(std::time::SystemTime, u32), FleetError> {
        let span = interval.as_micros() as i64 * i64::from(want);
        loop {
            let from = now_us() + LEAD.as_micros() as i64;
            let first = match self.advance(from, span).await? {
                Booking::Booked(first) => first,
                Booking::Stale => {
                    let from = now_us() + LEAD.as_micros() as i64;
                    match self.restart(from, span).await? {
                        true => from,
                        false => continue,
                    }
                }
                Booking::Full(ahead) => {
                    let wait = ahead - MAX_AHEAD.as_micros() as i64;
                    tokio::time::sleep(Duration::from_micros(wait.max(1000) as u64)).await;
                    continue;
                }
            };
            let first = std::time::UNIX_EPOCH + Duration::from_micros(first.max(0) as u64);
            return Ok((first, want));
        }
    }

    /// `tat += span` when the schedule is current: its next slot is not
    /// before `from` (now and the lead) nor too far ahead.
    async fn advance(&self, from: i64, span: i64) -> Result<Booking, FleetError> {
        let now = from;
        let result = super::counted(
            "pace",
            self.table
                .update(&self.pk, SK)
                .update_expression("SET tat = tat + :span, expiresAt = :exp")
                .condition_expression("tat >= :now AND tat <= :ahead")
                .expression_attribute_values(":span", n(span))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":ahead", n(now + MAX_AHEAD.as_micros() as i64))
                .expression_attribute_values(":exp", super::expires_at(now / 1000, KEEP_MS))
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await,
        );
        match result {
            Ok(out) => {
                let tat = out
                    .attributes()
                    .and_then(|a| get_n(a, "tat"))
                    .ok_or_else(|| FleetError::bare("a booking returned no schedule"))?;
                Ok(Booking::Booked(tat - span))
            }
            Err(e) => match condition_failed_item(&e) {
                Some(old) => match get_n(&old, "tat") {
                    Some(tat) if tat > now => Ok(Booking::Full(tat - now)),
                    _ => Ok(Booking::Stale),
                },
                None => Err(FleetError::sdk("booking send slots", e)),
            },
        }
    }

    /// `tat = from + span` when the schedule's next slot is before `from`;
    /// false when another consumer moved it first.
    async fn restart(&self, from: i64, span: i64) -> Result<bool, FleetError> {
        let now = from;
        let result = super::counted(
            "pace",
            self.table
                .update(&self.pk, SK)
                .update_expression("SET tat = :tat, expiresAt = :exp")
                .condition_expression("attribute_not_exists(tat) OR tat < :now")
                .expression_attribute_values(":tat", n(now + span))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":exp", super::expires_at(now / 1000, KEEP_MS))
                .send()
                .await,
        );
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed_item(&e).is_some() => Ok(false),
            Err(e) => Err(FleetError::sdk("restarting the send schedule", e)),
        }
    }
}

impl SharedSlots for FleetPace {
    fn book(
        &self,
        want: u32,
        interval: Duration,
    ) -> BoxFuture<'_, Result<(std::time::SystemTime, u32), SharedError>> {
        Box::pin(async move {
            self.book_slots(want, interval)
                .await
                .map_err(|e| Box::new(e) as SharedError)
        })
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
