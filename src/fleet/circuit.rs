//! One circuit per provider account for the whole fleet: when one consumer's
//! circuit opens (an alert-class error such as an expired token, or a run of
//! provider faults), every consumer stops sending to that account within
//! [`POLL`] and probes after the same cool-down.
//!
//! Item: `pk = "circuit#<provider>#<account>"`, `sk = "circuit"`,
//! `openUntil` (Unix ms), `reason`, `expiresAt`. An opening is one
//! conditional `UpdateItem` (only a later `openUntil` replaces an earlier
//! one); each consumer reads the item every [`POLL`] (a strongly consistent
//! `GetItem`: 1 read unit per 2 s per provider per consumer) and opens its
//! own circuit until the shared time. Each consumer then probes for itself:
//! the first to succeed closes its own, the others theirs on their probe.

use std::sync::Arc;
use std::time::Duration;

use super::{FleetError, FleetTable, condition_failed_item, get_n, get_s, n, s};
use crate::clock::now_ms;
use crate::delivery::breaker::{CircuitBreaker, Opened};

/// How often each consumer reads the fleet's circuit.
pub const POLL: Duration = Duration::from_secs(2);
const SK: &str = "circuit";
/// Items outlive the cool-down by a day.
const KEEP_MS: i64 = 86_400_000;

/// The circuit of one provider account.
#[derive(Debug, Clone)]
pub struct FleetCircuit {
    table: FleetTable,
    pk: String,
}

impl FleetCircuit {
    /// The circuit of `account` at `provider` in `table`.
    pub fn new(table: FleetTable, provider: &str, account: &str) -> Self {
        Self {
            table,
            pk: format!("circuit#{provider}#{account}"),
        }
    }

    /// Records an opening, unless a later one is recorded.
    pub async fn open(&self, opened: &Opened) -> Result<(), FleetError> {
        let result = super::counted(
            "circuit",
            self.table
                .update(&self.pk, SK)
                .update_expression("SET openUntil = :until, reason = :reason, expiresAt = :exp")
                .condition_expression("attribute_not_exists(openUntil) OR openUntil < :until")
                .expression_attribute_values(":until", n(opened.until_ms))
                .expression_attribute_values(":reason", s(opened.reason.clone()))
                .expression_attribute_values(":exp", super::expires_at(opened.until_ms, KEEP_MS))
                .send()
                .await,
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed_item(&e).is_some() => Ok(()),
            Err(e) => Err(FleetError::sdk("recording a circuit's opening", e)),
        }
    }

    /// The opening recorded, if it has not passed.
    pub async fn current(&self) -> Result<Option<Opened>, FleetError> {
        let item = self
            .table
            .get(&self.pk, SK, "reading the fleet's circuit")
            .await?;
        Ok(item.and_then(|item| {
            let until_ms = get_n(&item, "openUntil")?;
            (until_ms > now_ms()).then(|| Opened {
                until_ms,
                reason: get_s(&item, "reason").unwrap_or("unknown").to_owned(),
            })
        }))
    }

    /// Keeps `breaker` and the fleet's circuit in step for as long as the
    /// runtime runs: tells the fleet of the breaker's openings at once, and
    /// opens the breaker when the fleet's circuit is open.
    pub fn sync(self, breaker: Arc<CircuitBreaker>) {
        let (tell, mut openings) = tokio::sync::mpsc::unbounded_channel();
        breaker.tell_openings(tell);
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    opened = openings.recv() => {
                        let Some(opened) = opened else { return };
                        if let Err(e) = self.open(&opened).await {
                            tracing::warn!(error.message = %crate::telemetry::chain(&e), "a circuit's opening was not told to the fleet");
                        }
                    }
                    _ = poll.tick() => match self.current().await {
                        Ok(Some(opened)) => breaker.open_from_fleet(&opened),
                        Ok(None) => {}
                        Err(e) => tracing::debug!(error.message = %crate::telemetry::chain(&e), "the fleet's circuit was not read"),
                    },
                }
            }
        });
    }
}
