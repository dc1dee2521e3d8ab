//! The opaque cursor of `GET /api/v1/messages`: where the next page starts
//! (the last message's acceptance time and id) and a digest of who asked
//! and with which filters, so a cursor given with other filters or by
//! another key is refused (`400`). A cursor is not a capability: every page
//! is read within the caller's own messages whatever the cursor says, so an
//! edited one can skip or repeat rows but never reach another tenant's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::{Filters, Owner};

/// A message's place in the newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// When it was accepted, Unix ms.
    pub accepted_at_ms: i64,
    /// Its id (ties on time are ordered by id).
    pub id: String,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this gateway wrote.
    #[error("is not a cursor this API returned")]
    Malformed,
    /// Written for other filters or another key.
    #[error("was returned for other filters or another API key: repeat the query's filters")]
    OtherQuery,
}

/// Longest cursor read: a position and a digest are far shorter.
const MAX_LEN: usize = 256;

/// The cursor after `position` for `owner`'s search with `filters`, asked
/// by the key `asked_by` (another key of the same tenant gets a `400` too).
pub fn encode(position: &Position, owner: &Owner, filters: &Filters, asked_by: &str) -> String {
    let text = format!(
        "1.{}.{}.{}",
        position.accepted_at_ms,
        position.id,
        digest(owner, filters, asked_by)
    );
    URL_SAFE_NO_PAD.encode(text)
}

/// The position `cursor` names, if `owner` wrote it with `filters`.
pub fn decode(
    cursor: &str,
    owner: &Owner,
    filters: &Filters,
    asked_by: &str,
) -> Result<Position, CursorError> {
    if cursor.len() > MAX_LEN {
        return Err(CursorError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| CursorError::Malformed)?;
    let text = String::from_utf8(bytes).map_err(|_| CursorError::Malformed)?;
    let mut parts = text.split('.');
    let (Some("1"), Some(at), Some(id), Some(sum), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(CursorError::Malformed);
    };
    let accepted_at_ms = at.parse::<i64>().map_err(|_| CursorError::Malformed)?;
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(CursorError::Malformed);
    }
    if sum != digest(owner, filters, asked_by) {
        return Err(CursorError::OtherQuery);
    }
    Ok(Position {
        accepted_at_ms,
        id: id.to_owned(),
    })
}

/// 16 hex digits of SHA-256 over the owner and every filter, each field
/// tagged so that no two queries write the same text.
fn digest(owner: &Owner, filters: &Filters, asked_by: &str) -> String {
    let field = |v: Option<&str>| v.map_or_else(|| "-".to_owned(), |v| format!("={v}"));
    let text = [
        field(Some(&owner.tenant)),
        field(Some(asked_by)),
        field(owner.api_key_id.as_deref()),
        field(filters.to.as_deref()),
        field(filters.status.map(crate::status::model::Status::as_str)),
        field(filters.channel.as_deref()),
        field(filters.from.as_deref()),
        field(filters.batch_id.as_deref()),
        field(filters.since_ms.map(|v| v.to_string()).as_deref()),
        field(filters.until_ms.map(|v| v.to_string()).as_deref()),
    ]
    .join("\n");
    let hash = Sha256::digest(text.as_bytes());
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(key: &str) -> Owner {
        Owner {
            tenant: "default".into(),
            api_key_id: Some(key.into()),
        }
    }

    fn position() -> Position {
        Position {
            accepted_at_ms: 1_764_000_000_000,
            id: "0193a5b2-7c1e-7d4a-9f1e-2b3c4d5e6f70".into(),
        }
    }

    #[test]
    fn a_cursor_reads_back_for_the_same_key_and_filters() {
        let filters = Filters {
            to: Some("+14155550123".into()),
            ..Filters::default()
        };
        let cursor = encode(&position(), &owner("ops"), &filters, "ops");
        assert_eq!(
            decode(&cursor, &owner("ops"), &filters, "ops"),
            Ok(position())
        );
    }

    #[test]
    fn a_cursor_is_refused_for_another_key_or_other_filters() {
        let filters = Filters::default();
        let cursor = encode(&position(), &owner("ops"), &filters, "ops");
        assert_eq!(
            decode(&cursor, &owner("billing"), &filters, "billing"),
            Err(CursorError::OtherQuery)
        );
        let other = Filters {
            channel: Some("sms".into()),
            ..Filters::default()
        };
        assert_eq!(
            decode(&cursor, &owner("ops"), &other, "ops"),
            Err(CursorError::OtherQuery)
        );
    }

    #[test]
    fn another_key_of_the_same_tenant_cannot_reuse_a_cursor() {
        let tenant = Owner {
            tenant: "acme".into(),
            api_key_id: None,
        };
        let cursor = encode(&position(), &tenant, &Filters::default(), "acme-ops");
        assert_eq!(
            decode(&cursor, &tenant, &Filters::default(), "acme-billing"),
            Err(CursorError::OtherQuery)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bad in [
            "",
            "x",
            "!!!",
            &"A".repeat(300),
            &URL_SAFE_NO_PAD.encode("1.x.y.z"),
        ] {
            assert_eq!(
                decode(bad, &owner("ops"), &Filters::default(), "ops"),
                Err(CursorError::Malformed),
                "{bad}"
            );
        }
    }
}
