//! WhatsApp's pair rate for the whole fleet: at most `WHATSAPP_PAIR_RATE`
//! sends per 6 s from one number to one recipient, whichever consumer sends.
//!
//! Item: `pk = "pair#<provider>#<account>#<recipient>"`, `sk = "pair"`,
//! `times` (the send times of the last window, Unix ms, oldest first; a take
//! not sent yet is a pending mark 30 s ahead, replaced by the send time when
//! the message leaves, in the background), `ver`
//! (a counter for optimistic writes) and `expiresAt` (a minute after the last
//! send). A take is a conditional `UpdateItem`: first as if the recipient had
//! no recent send (`attribute_not_exists(ver)`), which is one write for most
//! recipients of a campaign; when that fails DynamoDB returns the item at no
//! read cost, and the take is written against its `ver`; the send time then
//! replaces the mark (a read and a write, after the send). So a send costs
//! three units: two writes and a read (one more write to a recipient written
//! to in the last minute).

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use futures_util::future::BoxFuture;

use super::{FleetError, FleetTable, Item, condition_failed_item, get_n, n};
use crate::channels::pacing::{SharedError, SharedPairs};
use crate::clock::now_ms;

const SK: &str = "pair";
/// Items outlive their last send by a minute (the window is 6 s).
const KEEP_MS: i64 = 60_000;

/// The pair-rate windows of one sending number.
#[derive(Debug, Clone)]
pub struct FleetPairs {
    table: FleetTable,
    prefix: String,
}

/// A recipient's window as read: its send times and version (`None`: no
/// item, so the next write is a first one).
struct Window {
    times: Vec<i64>,
    ver: Option<i64>,
}

/// Lost races in a row after which a take answers "wait a little" rather
/// than writing again.
const MAX_RACES: usize = 8;

impl Window {
    fn read(item: &Item) -> Self {
        let times = item
            .get("times")
            .and_then(|v| v.as_l().ok())
            .map(|l| {
                l.iter()
                    .filter_map(|t| t.as_n().ok().and_then(|t| t.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            times,
            ver: get_n(item, "ver"),
        }
    }
}

impl FleetPairs {
    /// The windows of `account` at `provider` in `table`.
    pub fn new(table: FleetTable, provider: &str, account: &str) -> Self {
        Self {
            table,
            prefix: format!("pair#{provider}#{account}#"),
        }
    }

    /// Takes a send to `recipient`, as a mark pending until `now + pending`
    /// (see [`Self::amend_newest`]), or says how long until one is free.
    pub async fn take(
        &self,
        recipient: &str,
        per_window: usize,
        window: Duration,
        pending: Duration,
    ) -> Result<Result<(), Duration>, FleetError> {
        let window = window.as_millis() as i64;
        let mut seen: Option<Window> = None;
        for _ in 0..MAX_RACES {
            let now = now_ms();
            let mut times = seen.as_ref().map(|w| w.times.clone()).unwrap_or_default();
            times.retain(|t| now - t < window);
            if times.len() >= per_window {
                // A pending send starts its window when it leaves, in a
                // moment: the window from now is the wait to plan for.
                let free_at = times[times.len() - per_window].min(now) + window;
                return Ok(Err(Duration::from_millis((free_at - now).max(1) as u64)));
            }
            times.push(now + pending.as_millis() as i64);
            match self
                .write(recipient, &times, seen.as_ref().and_then(|w| w.ver))
                .await?
            {
                None => return Ok(Ok(())),
                Some(found) => seen = Some(found),
            }
        }
        tracing::warn!(
            "a pair-rate window kept changing under this consumer's writes: the message waits a second"
        );
        Ok(Err(Duration::from_secs(1)))
    }

    /// Changes the newest send to `recipient`: moved to `moved_to` (Unix
    /// ms), or removed (`None`: it was not made).
    pub async fn amend_newest(
        &self,
        recipient: &str,
        moved_to: Option<i64>,
    ) -> Result<(), FleetError> {
        let mut seen = self.read(recipient).await?;
        for _ in 0..MAX_RACES {
            let Some(window) = seen else {
                return Ok(());
            };
            let mut times = window.times.clone();
            if times.pop().is_none() {
                return Ok(());
            }
            if let Some(at) = moved_to {
                times.push(at);
            }
            if window.ver.is_none() {
                return Ok(());
            }
            match self.write(recipient, &times, window.ver).await? {
                None => return Ok(()),
                Some(found) => seen = Some(found),
            }
        }
        tracing::warn!(
            "a pair-rate window kept changing under this consumer's writes: its stamp was not moved"
        );
        Ok(())
    }

    /// Writes `times` if the item is still at `ver` (or absent, for `None`);
    /// else returns what it holds.
    async fn write(
        &self,
        recipient: &str,
        times: &[i64],
        ver: Option<i64>,
    ) -> Result<Option<Window>, FleetError> {
        let now = now_ms();
        let mut update = self
            .table
            .update(format!("{}{recipient}", self.prefix), SK)
            .update_expression("SET times = :times, ver = :next, expiresAt = :exp")
            .expression_attribute_values(
                ":times",
                AttributeValue::L(times.iter().map(|t| n(*t)).collect()),
            )
            .expression_attribute_values(":next", n(ver.unwrap_or(0) + 1))
            .expression_attribute_values(":exp", super::expires_at(now, KEEP_MS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = match ver {
            None => update.condition_expression("attribute_not_exists(ver)"),
            Some(v) => update
                .condition_expression("ver = :ver")
                .expression_attribute_values(":ver", n(v)),
        };
        match super::counted("pairs", update.send().await) {
            Ok(_) => Ok(None),
            Err(e) => match condition_failed_item(&e) {
                Some(old) => Ok(Some(Window::read(&old))),
                None => Err(FleetError::sdk("taking a pair-rate slot", e)),
            },
        }
    }

    async fn read(&self, recipient: &str) -> Result<Option<Window>, FleetError> {
        let item = self
            .table
            .get(
                format!("{}{recipient}", self.prefix),
                SK,
                "reading a pair-rate window",
            )
            .await?;
        Ok(item.as_ref().map(Window::read))
    }
}

impl SharedPairs for FleetPairs {
    fn try_take<'a>(
        &'a self,
        recipient: &'a str,
        per_window: usize,
        window: Duration,
        pending: Duration,
    ) -> BoxFuture<'a, Result<Result<(), Duration>, SharedError>> {
        Box::pin(async move {
            self.take(recipient, per_window, window, pending)
                .await
                .map_err(|e| Box::new(e) as SharedError)
        })
    }

    fn give_back<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<(), SharedError>> {
        Box::pin(async move {
            self.amend_newest(recipient, None)
                .await
                .map_err(|e| Box::new(e) as SharedError)
        })
    }

    fn stamp_at<'a>(
        &'a self,
        recipient: &'a str,
        at: std::time::SystemTime,
    ) -> BoxFuture<'a, Result<(), SharedError>> {
        let at_ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Box::pin(async move {
            self.amend_newest(recipient, Some(at_ms))
                .await
                .map_err(|e| Box::new(e) as SharedError)
        })
    }
}
