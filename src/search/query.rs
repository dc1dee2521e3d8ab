//! The query strings of `GET /api/v1/messages` and `GET /api/v1/stats`,
//! read into a [`Search`] or a [`StatsQuery`] with every invalid parameter
//! named (a `400` lists them all). Unknown or repeated parameters are
//! refused too: a misspelt filter must not silently widen a search.

use std::collections::HashMap;

use super::cursor::{self, CursorError};
use super::tally::MAX_SERIES;
use super::{Filters, MINUTE_MS, Owner, Search, StatsQuery, minute_of};
use crate::domain::{FieldError, PhoneNumber};
use crate::status::model::Status;

/// The page size without `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 1_000;
/// The longest range `GET /api/v1/stats` counts.
pub const MAX_STATS_DAYS: i64 = 400;
/// Most parameters read (the route reads one more, to tell).
pub const MAX_PARAMS: usize = 64;
/// The longest `from`, `batchId` or `cursor` read.
const MAX_TEXT: usize = 256;

const DAY_MS: i64 = 86_400_000;

/// Collects the parameters and the errors found reading them.
struct Params {
    values: HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl Params {
    fn read(pairs: Vec<(String, String)>, known: &[&str]) -> Self {
        let mut params = Self {
            values: HashMap::new(),
            errors: Vec::new(),
        };
        if pairs.len() > MAX_PARAMS {
            params.error("query", "has more parameters than this operation takes");
            return params;
        }
        for (name, value) in pairs {
            if !known.contains(&name.as_str()) {
                params.error(&name, "is not a parameter of this operation");
                continue;
            }
            match params.values.entry(name) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let name = e.key().clone();
                    params.error(&name, "is given more than once");
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(value);
                }
            }
        }
        params
    }

    fn error(&mut self, field: &str, message: &str) {
        if self.errors.len() < crate::domain::validation::MAX_FIELD_ERRORS {
            self.errors.push(FieldError {
                field: field.chars().take(64).collect(),
                message: message.to_owned(),
            });
        }
    }

    /// A text parameter, non-empty and at most [`MAX_TEXT`] bytes.
    fn text(&mut self, name: &str) -> Option<String> {
        let value = self.values.get(name)?.clone();
        if value.is_empty() || value.len() > MAX_TEXT {
            self.error(name, "must be 1 to 256 characters");
            return None;
        }
        Some(value)
    }

    fn time(&mut self, name: &str) -> Option<i64> {
        let value = self.values.get(name)?.clone();
        match chrono::DateTime::parse_from_rfc3339(&value) {
            Ok(t) => Some(t.timestamp_millis()),
            Err(_) => {
                self.error(
                    name,
                    "must be an RFC 3339 time with an offset, like 2026-12-04T09:00:00Z",
                );
                None
            }
        }
    }

    fn channel(&mut self) -> Option<String> {
        let value = self.values.get("channel")?.clone();
        if matches!(value.as_str(), "whatsapp" | "sms") {
            Some(value)
        } else {
            self.error("channel", "must be whatsapp or sms");
            None
        }
    }

    fn range(&mut self) -> (Option<i64>, Option<i64>) {
        let (since, until) = (self.time("since"), self.time("until"));
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            self.error("until", "must be after since");
        }
        (since, until)
    }

    fn done<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// The search `pairs` ask of `owner`'s messages.
pub fn search(
    pairs: Vec<(String, String)>,
    owner: Owner,
    asked_by: &str,
) -> Result<Search, Vec<FieldError>> {
    let known = [
        "to", "status", "channel", "from", "batchId", "since", "until", "limit", "cursor",
    ];
    let mut p = Params::read(pairs, &known);
    let to = p
        .values
        .get("to")
        .cloned()
        .and_then(|v| match PhoneNumber::parse(v) {
            Ok(n) => Some(n.as_str().to_owned()),
            Err(e) => {
                p.error("to", &format!("{e}"));
                None
            }
        });
    let status = p.values.get("status").cloned().and_then(|v| {
        let found = Status::ALL.into_iter().find(|s| s.as_str() == v);
        if found.is_none() {
            p.error("status", "must be one of accepted, redriven, submitted, sent, delivered, read, cancelled, failed");
        }
        found
    });
    let channel = p.channel();
    // Numeric senders are kept without their `+` (as the tenants file's).
    let from = p.text("from").map(|f| f.trim_start_matches('+').to_owned());
    let batch_id = p.text("batchId");
    let (since_ms, until_ms) = p.range();
    let limit = match p.values.get("limit").map(|v| v.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            p.error("limit", "must be a whole number from 1 to 1000");
            DEFAULT_LIMIT
        }
    };
    let filters = Filters {
        to,
        status,
        channel,
        from,
        batch_id,
        since_ms,
        until_ms,
    };
    let after = match p.text("cursor") {
        None => None,
        Some(c) => match cursor::decode(&c, &owner, &filters, asked_by) {
            Ok(position) if !filters.holds(position.accepted_at_ms) => {
                p.error("cursor", "is outside since and until");
                None
            }
            Ok(position) => Some(position),
            Err(e @ (CursorError::Malformed | CursorError::OtherQuery)) => {
                p.error("cursor", &e.to_string());
                None
            }
        },
    };
    p.done(Search {
        owner,
        filters,
        limit,
        asked_by: asked_by.to_owned(),
        after,
    })
}

/// The count `pairs` ask of `owner`'s messages, `now_ms` being now: the
/// last 24 hours by default; `since` is rounded down and `until` up to the
/// minute (the counters' unit).
pub fn stats(
    pairs: Vec<(String, String)>,
    owner: Owner,
    now_ms: i64,
) -> Result<StatsQuery, Vec<FieldError>> {
    let mut p = Params::read(pairs, &["since", "until", "channel", "granularity"]);
    let channel = p.channel();
    let (since, until) = p.range();
    // Saturating, so that no range a client writes can overflow (RFC 3339
    // keeps years within 0000-9999 today; the bound costs nothing).
    let until_ms = minute_of(until.unwrap_or(now_ms).saturating_add(MINUTE_MS - 1));
    let since_ms = minute_of(since.unwrap_or(until_ms.saturating_sub(DAY_MS)));
    let span = until_ms.saturating_sub(since_ms);
    if since_ms >= until_ms {
        p.error("since", "must be before until (default: now)");
    } else if span > MAX_STATS_DAYS * DAY_MS {
        p.error("since", "the range may span at most 400 days");
    }
    let bucket_ms = match p.values.get("granularity").map(String::as_str) {
        None => None,
        Some("minute") => Some(MINUTE_MS),
        Some("hour") => Some(60 * MINUTE_MS),
        Some("day") => Some(DAY_MS),
        Some(_) => {
            p.error("granularity", "must be minute, hour or day");
            None
        }
    };
    if let Some(step) = bucket_ms
        && span <= MAX_STATS_DAYS * DAY_MS
        && (until_ms - since_ms.div_euclid(step) * step + step - 1) / step > MAX_SERIES
    {
        p.error(
            "granularity",
            "makes more than 1,500 buckets over this range: use a coarser one or a shorter range",
        );
    }
    p.done(StatsQuery {
        owner,
        since_ms,
        until_ms,
        channel,
        bucket_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            tenant: "default".into(),
            api_key_id: Some("ops".into()),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let bad = pairs(&[
            ("limit", "0"),
            ("status", "lost"),
            ("channel", "fax"),
            ("to", "0044"),
            ("since", "yesterday"),
            ("cursor", "nope"),
            ("statuss", "failed"),
        ]);
        let mut named = fields(search(bad, owner(), "ops").unwrap_err());
        named.sort();
        assert_eq!(
            named,
            [
                "channel", "cursor", "limit", "since", "status", "statuss", "to"
            ]
        );
        for limit in ["1001", "-1", "1.5", "", "99999999999999999999999"] {
            let e = search(pairs(&[("limit", limit)]), owner(), "ops").unwrap_err();
            assert_eq!(fields(e), ["limit"], "{limit}");
        }
        let e = search(pairs(&[("limit", "5"), ("limit", "6")]), owner(), "ops").unwrap_err();
        assert_eq!(fields(e), ["limit"]);
    }

    #[test]
    fn a_search_reads_its_filters() {
        let s = search(
            pairs(&[
                ("to", "+14155550123"),
                ("status", "failed"),
                ("limit", "1000"),
            ]),
            owner(),
            "ops",
        )
        .unwrap();
        assert_eq!(s.limit, 1000);
        assert_eq!(s.filters.to.as_deref(), Some("+14155550123"));
        assert_eq!(s.filters.status, Some(Status::Failed));
        assert_eq!(search(vec![], owner(), "ops").unwrap().limit, DEFAULT_LIMIT);
        let numeric = search(pairs(&[("from", "+14155550100")]), owner(), "ops").unwrap();
        assert_eq!(
            numeric.filters.from.as_deref(),
            Some("14155550100"),
            "kept without +"
        );
    }

    #[test]
    fn a_cursor_outside_the_range_or_too_many_parameters_are_refused() {
        let filters = Filters {
            since_ms: Some(1_000),
            ..Filters::default()
        };
        let position = super::super::Position {
            accepted_at_ms: 5,
            id: "0193a5b2-7c1e-7d4a-9f1e-2b3c4d5e6f70".into(),
        };
        let cursor = cursor::encode(&position, &owner(), &filters, "ops");
        let asked = pairs(&[("since", "1970-01-01T00:00:01Z"), ("cursor", &cursor)]);
        let e = search(asked, owner(), "ops").unwrap_err();
        assert_eq!(fields(e), ["cursor"]);
        let many: Vec<(String, String)> = (0..=MAX_PARAMS)
            .map(|_| ("to".into(), "+1".into()))
            .collect();
        let e = search(many, owner(), "ops").unwrap_err();
        assert_eq!(fields(e), ["query"]);
    }

    #[test]
    fn stats_default_to_the_last_day_rounded_to_minutes() {
        let now = 1_764_000_030_000;
        let q = stats(vec![], owner(), now).unwrap();
        assert_eq!(q.until_ms, minute_of(now) + MINUTE_MS);
        assert_eq!(q.until_ms - q.since_ms, DAY_MS);
        let e = stats(
            pairs(&[("granularity", "minute"), ("since", "2025-11-20T00:00:00Z")]),
            owner(),
            now,
        )
        .unwrap_err();
        assert_eq!(fields(e), ["granularity"]);
        let extremes = pairs(&[
            ("since", "0000-01-01T00:00:00Z"),
            ("until", "9999-12-31T23:59:59Z"),
            ("granularity", "minute"),
        ]);
        let e = stats(extremes, owner(), now).unwrap_err();
        assert_eq!(fields(e), ["since"], "the widest range is a 400");
        let e = stats(pairs(&[("granularity", "week")]), owner(), now).unwrap_err();
        assert_eq!(fields(e), ["granularity"]);
        let e = stats(pairs(&[("since", "2999-01-01T00:00:00Z")]), owner(), now).unwrap_err();
        assert_eq!(fields(e), ["since"]);
    }
}
