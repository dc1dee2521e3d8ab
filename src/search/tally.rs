//! The counters behind `GET /api/v1/stats`. A message counts once, in the
//! minute it was accepted, under its current channel, status and error code
//! (a [`Tally`]). When its current status changes, the store that records
//! the change moves the message's count from the old tally to the new one in
//! the same atomic write that records which tally it is counted under (the
//! embedded default: one transaction; DynamoDB: one transaction conditioned
//! on the message's `counted` attribute). A retried or repeated report
//! changes no status, so it moves nothing; two writers racing on one message
//! each move only from the tally they saw recorded, so the count is never
//! doubled. A query sums the minutes' counters ([`Bucket`]s): its cost
//! follows the minutes and tallies in the range, not the messages.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::StatsQuery;
use crate::status::model::{ErrorCode, Status};
use crate::status::record::MessageRecord;

/// What one message adds to the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The channel of its current status.
    pub channel: String,
    /// Its current status.
    pub status: Status,
    /// Its failure's code (`""` unless it failed with one).
    pub code: String,
    /// The segments of its SMS text (0 for a WhatsApp message without an SMS fallback).
    pub segments: i64,
}

impl Tally {
    /// The tally of `record` (`segments`: of its SMS text); `None` while no
    /// sender has written it (only early provider reports).
    pub fn of(record: &MessageRecord, segments: i64) -> Option<Self> {
        if !record.is_known() {
            return None;
        }
        let code = match record.error().and_then(|e| e.code.as_ref()) {
            Some(ErrorCode::Number(n)) => n.to_string(),
            Some(ErrorCode::Name(name)) => name.clone(),
            None => String::new(),
        };
        Some(Self {
            channel: record.latest_channel().to_owned(),
            status: record.status()?,
            code,
            segments,
        })
    }

    /// The tally's key, as stored with the message (`channel|status|code`).
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.channel, self.status.as_str(), self.code)
    }

    /// The tally a stored key names, with `segments`.
    pub fn from_key(key: &str, segments: i64) -> Option<Self> {
        let mut parts = key.splitn(3, '|');
        let channel = parts.next()?.to_owned();
        let status = parts.next()?;
        let code = parts.next()?.to_owned();
        Some(Self {
            channel,
            status: Status::ALL.into_iter().find(|s| s.as_str() == status)?,
            code,
            segments,
        })
    }

    /// This tally's SMS segments: its text's when it is on SMS.
    pub fn sms_segments(&self) -> i64 {
        if self.channel == "sms" {
            self.segments
        } else {
            0
        }
    }
}

/// The counters of one minute (or of a series' bucket) and one tally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The minute's (or bucket's) start, Unix ms.
    pub at_ms: i64,
    /// The channel.
    pub channel: String,
    /// The status's name.
    pub status: String,
    /// The error code (`""`: none).
    pub code: String,
    /// How many messages.
    pub count: i64,
    /// Their SMS segments.
    pub segments: i64,
}

/// Most buckets a series may have (a day of minutes fits).
pub const MAX_SERIES: i64 = 1_500;

/// The answer of `GET /api/v1/stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    since_ms: i64,
    until_ms: i64,
    by_status: BTreeMap<String, i64>,
    by_error_code: BTreeMap<String, i64>,
    by_channel: BTreeMap<String, i64>,
    sms_segments: i64,
    series: Option<BTreeMap<i64, BTreeMap<String, i64>>>,
}

impl Counts {
    /// Sums `buckets` for `query` (buckets outside its range are ignored).
    pub fn sum(query: &StatsQuery, buckets: &[Bucket]) -> Self {
        let mut counts = Self {
            since_ms: query.since_ms,
            until_ms: query.until_ms,
            by_status: Status::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect(),
            by_error_code: BTreeMap::new(),
            by_channel: ["whatsapp", "sms"].map(|c| (c.to_owned(), 0)).into(),
            sms_segments: 0,
            series: query.bucket_ms.map(|step| {
                let first = query.since_ms.div_euclid(step) * step;
                (first..query.until_ms)
                    .step_by(usize::try_from(step).unwrap_or(usize::MAX).max(1))
                    .map(|at| (at, BTreeMap::new()))
                    .collect()
            }),
        };
        for b in buckets {
            if b.at_ms < query.since_ms || b.at_ms >= query.until_ms || b.count == 0 {
                continue;
            }
            counts.add(query, b);
        }
        counts
    }

    fn add(&mut self, query: &StatsQuery, b: &Bucket) {
        *self.by_status.entry(b.status.clone()).or_default() += b.count;
        *self.by_channel.entry(b.channel.clone()).or_default() += b.count;
        if !b.code.is_empty() {
            *self.by_error_code.entry(b.code.clone()).or_default() += b.count;
        }
        if b.channel == "sms" {
            self.sms_segments += b.segments;
        }
        if let (Some(series), Some(step)) = (&mut self.series, query.bucket_ms) {
            let at = b.at_ms.div_euclid(step) * step;
            *series
                .entry(at)
                .or_default()
                .entry(b.status.clone())
                .or_default() += b.count;
        }
    }

    /// The JSON answer.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "since": crate::clock::format_ms(self.since_ms),
            "until": crate::clock::format_ms(self.until_ms),
            "byStatus": self.by_status,
            "byErrorCode": self.by_error_code,
            "byChannel": self.by_channel,
            "smsSegments": self.sms_segments,
        });
        if let Some(series) = &self.series {
            body["series"] = series
                .iter()
                .map(|(at, by)| json!({"at": crate::clock::format_ms(*at), "byStatus": by}))
                .collect();
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Owner;

    fn query(bucket_ms: Option<i64>) -> StatsQuery {
        StatsQuery {
            owner: Owner {
                tenant: "default".into(),
                api_key_id: None,
            },
            since_ms: 0,
            until_ms: 3 * 3_600_000,
            channel: None,
            bucket_ms,
        }
    }

    fn bucket(at_ms: i64, channel: &str, status: &str, code: &str, count: i64) -> Bucket {
        Bucket {
            at_ms,
            channel: channel.into(),
            status: status.into(),
            code: code.into(),
            count,
            segments: count * 2,
        }
    }

    #[test]
    fn totals_and_an_hourly_series_sum_the_minutes() {
        let buckets = [
            bucket(60_000, "whatsapp", "delivered", "", 3),
            bucket(120_000, "sms", "failed", "21", 1),
            bucket(3_600_000 + 60_000, "whatsapp", "failed", "131026", 2),
            bucket(99 * 3_600_000, "whatsapp", "read", "", 9),
        ];
        let body = Counts::sum(&query(Some(3_600_000)), &buckets).to_json();
        assert_eq!(body["byStatus"]["delivered"], 3);
        assert_eq!(body["byStatus"]["failed"], 3);
        assert_eq!(body["byStatus"]["read"], 0, "outside the range");
        assert_eq!(body["byErrorCode"], json!({"131026": 2, "21": 1}));
        assert_eq!(body["byChannel"], json!({"whatsapp": 5, "sms": 1}));
        assert_eq!(body["smsSegments"], 2);
        let series = body["series"].as_array().unwrap();
        assert_eq!(series.len(), 3);
        assert_eq!(series[0]["at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(series[0]["byStatus"], json!({"delivered": 3, "failed": 1}));
        assert_eq!(series[1]["byStatus"], json!({"failed": 2}));
        assert_eq!(series[2]["byStatus"], json!({}));
    }

    #[test]
    fn a_tally_key_reads_back() {
        let t = Tally {
            channel: "sms".into(),
            status: Status::Failed,
            code: "opted-out".into(),
            segments: 2,
        };
        assert_eq!(Tally::from_key(&t.key(), 2), Some(t));
        assert_eq!(Tally::from_key("sms|nonsense|", 0), None);
    }
}
