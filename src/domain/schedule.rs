//! When a message may go: `sendAt` (not before it) and `quietHours` (not
//! inside them, in a named zone or the recipient's). The gateway turns both
//! into one due time when it accepts the message ([`due_at`]); the queue (or,
//! with SNS, the schedule in `STATUS_TABLE`) holds the message until then.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::PhoneNumber;
use super::validation::{Errors, Obj};

/// `SCHEDULE_MAX_DAYS`' default: the furthest `sendAt`.
pub const DEFAULT_MAX_DAYS: u32 = 35;

/// Hours a message must not arrive in, each day, in one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start, local minutes after midnight.
    pub from: u32,
    /// End (exclusive), local minutes after midnight; before `from` when the
    /// hours cross midnight (`21:00`–`08:00`).
    pub to: u32,
    /// The zone they are counted in.
    pub zone: QuietZone,
}

/// Where quiet hours are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietZone {
    /// A named IANA zone.
    Named(Tz),
    /// The main zone of the recipient's country ([`super::zones`]).
    Recipient,
}

impl QuietHours {
    /// Reads `{"from": "21:00", "to": "08:00", "timeZone": "Europe/Madrid" | "recipient"}`;
    /// each problem as a message about its field (`from`, `to`, `timeZone`),
    /// named under `path`.
    pub fn parse(value: &Value, path: &str) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![(
                path.to_owned(),
                "must be an object with from, to and timeZone".into(),
            )]);
        };
        for key in object.keys() {
            if !matches!(key.as_str(), "from" | "to" | "timeZone") {
                problems.push((
                    format!("{path}.{key}"),
                    "is not a field of quietHours".into(),
                ));
            }
        }
        let mut time = |key: &str| {
            let parsed = object
                .get(key)
                .and_then(Value::as_str)
                .filter(|t| t.len() == 5)
                .and_then(|t| NaiveTime::parse_from_str(t, "%H:%M").ok());
            if parsed.is_none() {
                problems.push((
                    format!("{path}.{key}"),
                    "must be a time of day as HH:MM (24-hour)".into(),
                ));
            }
            parsed.map(minutes)
        };
        let (from, to) = (time("from"), time("to"));
        let zone = match object.get("timeZone").and_then(Value::as_str) {
            Some("recipient") => Some(QuietZone::Recipient),
            Some(name) => name.parse::<Tz>().ok().map(QuietZone::Named),
            None => None,
        };
        if zone.is_none() {
            problems.push((
                format!("{path}.timeZone"),
                "must be an IANA time zone (Europe/Madrid) or \"recipient\"".into(),
            ));
        }
        if from.is_some() && from == to {
            problems.push((format!("{path}.to"), "must differ from from".into()));
        }
        match (from, to, zone) {
            (Some(from), Some(to), Some(zone)) if problems.is_empty() => {
                Ok(Self { from, to, zone })
            }
            _ => Err(problems),
        }
    }

    /// The first instant at or after `at` outside these hours, for a
    /// message to `to`.
    pub fn release(&self, at: DateTime<Utc>, to: &PhoneNumber) -> DateTime<Utc> {
        let zone = match self.zone {
            QuietZone::Named(zone) => zone,
            QuietZone::Recipient => super::zones::recipient_zone(to).0,
        };
        let local = at.with_timezone(&zone);
        let now = minutes(local.time());
        let inside = if self.from < self.to {
            (self.from..self.to).contains(&now)
        } else {
            now >= self.from || now < self.to
        };
        if !inside {
            return at;
        }
        let mut day = local.date_naive();
        if self.from > self.to && now >= self.from {
            day = day.succ_opt().unwrap_or(day);
        }
        let end = NaiveTime::from_num_seconds_from_midnight_opt(self.to * 60, 0)
            .unwrap_or(NaiveTime::MIN);
        resolve_after(zone, day.and_time(end), at)
    }
}

/// The instant local time `naive` names in `zone` that is not before `at`:
/// of a time the clocks pass twice (they go back), the first occurrence not
/// before `at`; of a time they skip (they go forward), the first instant
/// after the jump.
fn resolve_after(zone: Tz, naive: chrono::NaiveDateTime, at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::LocalResult;
    // A jump is at most a few hours: step a minute at a time past it.
    for step in 0..=(4 * 60) {
        let candidates = match zone.from_local_datetime(&(naive + Duration::minutes(step))) {
            LocalResult::Single(t) => vec![t],
            LocalResult::Ambiguous(a, b) => vec![a, b],
            LocalResult::None => continue,
        };
        return candidates
            .into_iter()
            .map(|t| t.with_timezone(&Utc))
            .find(|t| *t >= at)
            .unwrap_or(at);
    }
    at
}

fn minutes(t: NaiveTime) -> u32 {
    use chrono::Timelike;
    t.hour() * 60 + t.minute()
}

/// `sendAt`: an RFC 3339 time with an offset, at most `max_days` ahead; a
/// past time means now (`None`), as does no `sendAt`.
pub(crate) fn check_send_at(
    root: &Obj<'_>,
    now_ms: i64,
    max_days: u32,
    errors: &mut Errors,
) -> Option<i64> {
    let value = root.get("sendAt")?;
    let parsed = value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    let latest = now_ms + i64::from(max_days) * 86_400_000;
    match parsed {
        None => {
            errors.add(
                "sendAt",
                "must be an RFC 3339 time with an offset, such as 2026-12-04T09:00:00+01:00",
            );
            None
        }
        Some(ms) if ms > latest => {
            errors.add(
                "sendAt",
                format!("is more than {max_days} days ahead (SCHEDULE_MAX_DAYS)"),
            );
            None
        }
        Some(ms) => (ms > now_ms).then_some(ms),
    }
}

/// `quietHours`, when given and valid.
pub(crate) fn check_quiet_hours(root: &Obj<'_>, errors: &mut Errors) -> Option<QuietHours> {
    let value = root.get("quietHours")?;
    match QuietHours::parse(value, "quietHours") {
        Ok(quiet) => Some(quiet),
        Err(problems) => {
            for (field, message) in problems {
                errors.add(field, message);
            }
            None
        }
    }
}

/// When a message accepted at `now_ms` is due: its `sendAt` (or now), moved
/// out of its quiet hours (its own, else its tenant's `default_quiet`).
/// `None`: due now.
pub fn due_at(
    send_at_ms: Option<i64>,
    quiet: Option<&QuietHours>,
    to: &PhoneNumber,
    now_ms: i64,
) -> Option<i64> {
    let start = send_at_ms.unwrap_or(now_ms).max(now_ms);
    let due = match (quiet, DateTime::from_timestamp_millis(start)) {
        (Some(quiet), Some(at)) => quiet.release(at, to).timestamp_millis(),
        _ => start,
    };
    (due > now_ms).then_some(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    fn quiet(v: &Value) -> QuietHours {
        QuietHours::parse(v, "quietHours").unwrap()
    }

    #[test]
    fn quiet_hours_over_midnight_end_the_next_morning_in_their_zone() {
        let q = quiet(&json!({"from": "21:00", "to": "08:00", "timeZone": "Europe/Madrid"}));
        let to = PhoneNumber::parse("+14155550123").unwrap();
        // 22:30 in Madrid (CET, +01:00) → 08:00 the next day.
        assert_eq!(
            q.release(at("2026-12-04T21:30:00Z"), &to),
            at("2026-12-05T07:00:00Z")
        );
        // 03:00 in Madrid → 08:00 the same day.
        assert_eq!(
            q.release(at("2026-12-05T02:00:00Z"), &to),
            at("2026-12-05T07:00:00Z")
        );
        // 12:00 in Madrid: not quiet.
        assert_eq!(
            q.release(at("2026-12-05T11:00:00Z"), &to),
            at("2026-12-05T11:00:00Z")
        );
        // Summer time (+02:00): 08:00 is 06:00Z.
        assert_eq!(
            q.release(at("2026-07-01T23:00:00Z"), &to),
            at("2026-07-02T06:00:00Z")
        );
    }

    #[test]
    fn recipient_quiet_hours_use_the_numbers_country() {
        let q = quiet(&json!({"from": "13:00", "to": "15:00", "timeZone": "recipient"}));
        let tokyo = PhoneNumber::parse("+81312345678").unwrap();
        let madrid = PhoneNumber::parse("+34612345678").unwrap();
        // 04:30Z is 13:30 in Tokyo (quiet until 15:00 = 06:00Z), 05:30 in Madrid.
        assert_eq!(
            q.release(at("2026-12-04T04:30:00Z"), &tokyo),
            at("2026-12-04T06:00:00Z")
        );
        assert_eq!(
            q.release(at("2026-12-04T04:30:00Z"), &madrid),
            at("2026-12-04T04:30:00Z")
        );
    }

    #[test]
    fn a_quiet_end_the_clock_skips_is_the_first_time_after_it() {
        // 2026-03-29 02:00 does not exist in Madrid (clocks go 02:00 → 03:00).
        let q = quiet(&json!({"from": "01:00", "to": "02:30", "timeZone": "Europe/Madrid"}));
        let to = PhoneNumber::parse("+34612345678").unwrap();
        let released = q.release(at("2026-03-29T00:15:00Z"), &to);
        assert_eq!(
            released,
            at("2026-03-29T01:00:00Z"),
            "03:00 CEST, the jump's end"
        );
    }

    #[test]
    fn a_quiet_end_the_clock_passes_twice_is_the_occurrence_after_now() {
        // 2026-10-25 in Madrid: 03:00 CEST becomes 02:00 CET; 02:15 comes twice.
        let q = quiet(&json!({"from": "01:00", "to": "02:30", "timeZone": "Europe/Madrid"}));
        let to = PhoneNumber::parse("+34612345678").unwrap();
        // The first 02:15 (CEST, 00:15Z): quiet until the first 02:30 (00:30Z).
        assert_eq!(
            q.release(at("2026-10-25T00:15:00Z"), &to),
            at("2026-10-25T00:30:00Z")
        );
        // The second 02:15 (CET, 01:15Z): quiet until the second 02:30 (01:30Z).
        assert_eq!(
            q.release(at("2026-10-25T01:15:00Z"), &to),
            at("2026-10-25T01:30:00Z")
        );
    }

    #[test]
    fn bad_quiet_hours_name_each_field() {
        let bad = QuietHours::parse(
            &json!({"from": "25:00", "to": "8:00", "timeZone": "Mars/Base", "x": 1}),
            "quietHours",
        )
        .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "quietHours.x",
                "quietHours.from",
                "quietHours.to",
                "quietHours.timeZone"
            ]
        );
        let same = QuietHours::parse(
            &json!({"from": "08:00", "to": "08:00", "timeZone": "UTC"}),
            "q",
        )
        .unwrap_err();
        assert_eq!(same[0].0, "q.to");
    }

    #[test]
    fn due_is_the_later_of_send_at_and_now_out_of_quiet_hours() {
        let to = PhoneNumber::parse("+34612345678").unwrap();
        let now = at("2026-12-04T12:00:00Z").timestamp_millis();
        assert_eq!(due_at(None, None, &to, now), None);
        assert_eq!(
            due_at(Some(now - 5_000), None, &to, now),
            None,
            "past is now"
        );
        assert_eq!(due_at(Some(now + 5_000), None, &to, now), Some(now + 5_000));
        let q = quiet(&json!({"from": "12:00", "to": "14:00", "timeZone": "UTC"}));
        assert_eq!(
            due_at(None, Some(&q), &to, now),
            Some(at("2026-12-04T14:00:00Z").timestamp_millis())
        );
    }
}
