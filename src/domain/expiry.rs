//! A message's expiry: `expiresAt` (RFC 3339 with an offset, in the future
//! and after `sendAt`, at most [`MAX_VALIDITY_SECS`] after the later of now
//! and `sendAt`) or `validitySeconds` (1 to [`MAX_VALIDITY_SECS`], counted
//! from `sendAt` when the message is scheduled, else from now), not both.

use super::validation::{Errors, Obj};

/// The longest validity a message may ask for: 35 days.
pub const MAX_VALIDITY_SECS: i64 = 35 * 24 * 3600;

/// The expiry the module documentation describes: when the message stops
/// being worth sending, Unix ms.
pub(crate) fn check_expiry(
    root: &Obj<'_>,
    now_ms: i64,
    send_at_ms: Option<i64>,
    errors: &mut Errors,
) -> Option<i64> {
    let start = send_at_ms.unwrap_or(now_ms).max(now_ms);
    let latest = start + MAX_VALIDITY_SECS * 1000;
    match (root.get("expiresAt"), root.get("validitySeconds")) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            errors.add(
                "validitySeconds",
                "give expiresAt or validitySeconds, not both",
            );
            None
        }
        (Some(at), None) => {
            let parsed = at
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            let problem = match parsed {
                None => Some(
                    "must be an RFC 3339 time with an offset, such as 2026-12-04T18:00:00+01:00",
                ),
                Some(ms) if ms <= now_ms => Some("is not in the future"),
                Some(ms) if ms <= start => Some("is not after sendAt"),
                Some(ms) if ms > latest => Some("is more than 35 days after sendAt or now"),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                errors.add("expiresAt", problem);
            }
            parsed.filter(|_| problem.is_none())
        }
        (None, Some(secs)) => match secs
            .as_i64()
            .filter(|s| (1..=MAX_VALIDITY_SECS).contains(s))
        {
            Some(secs) => Some(start + secs * 1000),
            None => {
                errors.add(
                    "validitySeconds",
                    format!("must be a whole number of seconds from 1 to {MAX_VALIDITY_SECS}"),
                );
                None
            }
        },
    }
}
