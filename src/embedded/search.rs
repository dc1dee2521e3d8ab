//! Search and statistics in the embedded default's database.
//!
//! - `message_index`: one row per message, written in the enqueue's
//!   transaction (so a queued message is listed before any delivery) and kept
//!   in step with its record in every transaction that saves the record
//!   ([`sync`]): its current channel, status and error code, its segments.
//!   Its indexes each serve one filter in newest-first order, so a page is
//!   read from an index range without sorting (the plans are checked by
//!   `explain` in the tests and shown in the README).
//! - `message_counts`: the counters of [`crate::search::tally`], one row per
//!   owner, minute and tally, moved in the same transaction as the status.
//!
//! Both expire with the statuses (`STATUS_TTL_DAYS`).

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use crate::contract::Envelope;
use crate::search::{Bucket, Found, Position, Search, StatsQuery, Tally, minute_of};
use crate::status::{MessageInfo, MessageRecord};

/// Creates the tables and their indexes (idempotent).
pub fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS message_index (
             id TEXT PRIMARY KEY,
             tenant TEXT NOT NULL,
             api_key_id TEXT NOT NULL,
             accepted_at INTEGER NOT NULL,
             recipient TEXT NOT NULL,
             sender TEXT,
             batch_id TEXT,
             channel TEXT NOT NULL,
             status TEXT NOT NULL,
             code TEXT NOT NULL DEFAULT '',
             segments INTEGER NOT NULL DEFAULT 0,
             updated_at INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS message_index_time ON message_index (tenant, accepted_at, id);
         CREATE INDEX IF NOT EXISTS message_index_to ON message_index (tenant, recipient, accepted_at, id);
         CREATE INDEX IF NOT EXISTS message_index_status ON message_index (tenant, status, accepted_at, id);
         CREATE INDEX IF NOT EXISTS message_index_channel ON message_index (tenant, channel, accepted_at, id);
         CREATE INDEX IF NOT EXISTS message_index_sender ON message_index (tenant, sender, accepted_at, id)
             WHERE sender IS NOT NULL;
         CREATE INDEX IF NOT EXISTS message_index_batch ON message_index (tenant, batch_id, accepted_at, id)
             WHERE batch_id IS NOT NULL;
         CREATE INDEX IF NOT EXISTS message_index_updated ON message_index (updated_at);
         CREATE TABLE IF NOT EXISTS message_counts (
             tenant TEXT NOT NULL,
             minute INTEGER NOT NULL,
             api_key_id TEXT NOT NULL,
             channel TEXT NOT NULL,
             status TEXT NOT NULL,
             code TEXT NOT NULL,
             count INTEGER NOT NULL,
             segments INTEGER NOT NULL,
             UNIQUE (tenant, minute, api_key_id, channel, status, code)
         );
         CREATE INDEX IF NOT EXISTS message_counts_minute ON message_counts (minute);",
    )
}

/// Lists a message accepted just now (the enqueue's transaction), counted
/// as `accepted`. A message already listed (a retried enqueue) is not
/// counted again.
pub fn insert(tx: &Transaction<'_>, info: &MessageInfo, now: i64) -> rusqlite::Result<()> {
    let tally = Tally {
        channel: info.channel.clone(),
        status: crate::status::Status::Accepted,
        code: String::new(),
        segments: info.sms_segments,
    };
    let added = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO message_index (id, tenant, api_key_id, accepted_at, recipient,
                 sender, batch_id, channel, status, code, segments, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, '', ?10, ?11)",
        )?
        .execute(params![
            info.id,
            info.tenant,
            info.api_key_id,
            info.accepted_at_ms,
            info.to,
            info.from,
            info.batch_id,
            tally.channel,
            tally.status.as_str(),
            tally.segments,
            now
        ])?;
    if added == 1 {
        count(tx, &owner_of(info), info.accepted_at_ms, &tally, 1)?;
    }
    Ok(())
}

/// The owner columns of a message: tenant, key.
struct Counted<'a> {
    tenant: &'a str,
    api_key_id: &'a str,
}

fn owner_of(info: &MessageInfo) -> Counted<'_> {
    Counted {
        tenant: &info.tenant,
        api_key_id: &info.api_key_id,
    }
}

/// Adds `delta` messages of `tally` to the minute of `accepted_at_ms`.
fn count(
    tx: &Transaction<'_>,
    owner: &Counted<'_>,
    accepted_at_ms: i64,
    tally: &Tally,
    delta: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO message_counts (tenant, minute, api_key_id, channel, status, code, count, segments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, minute, api_key_id, channel, status, code)
         DO UPDATE SET count = count + ?7, segments = segments + ?8",
    )?
    .execute(params![
        owner.tenant,
        minute_of(accepted_at_ms),
        owner.api_key_id,
        tally.channel,
        tally.status.as_str(),
        tally.code,
        delta,
        delta * tally.sms_segments()
    ])?;
    Ok(())
}

/// Brings `record`'s row in step with it (the caller's transaction saves
/// the record): when its current tally changed, the row takes the new one
/// and the count moves from the old tally to the new. A message without a
/// row (accepted before the index existed) gets one.
pub fn sync(tx: &Transaction<'_>, record: &MessageRecord, now: i64) -> rusqlite::Result<()> {
    let row: Option<(String, String, String, i64)> = tx
        .prepare_cached("SELECT channel, status, code, segments FROM message_index WHERE id = ?1")?
        .query_row([&record.id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let segments = row.as_ref().map_or(0, |r| r.3);
    let Some(new) = Tally::of(record, segments) else {
        return Ok(());
    };
    let owner = Counted {
        tenant: &record.tenant,
        api_key_id: &record.api_key_id,
    };
    let Some((channel, status, code, _)) = row else {
        insert_from_record(tx, record, &new, now)?;
        return count(tx, &owner, record.accepted_at_ms, &new, 1);
    };
    let old = Tally::from_key(&format!("{channel}|{status}|{code}"), segments);
    if old.as_ref() == Some(&new) {
        return Ok(());
    }
    tx.prepare_cached(
        "UPDATE message_index SET channel = ?2, status = ?3, code = ?4, updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![record.id, new.channel, new.status.as_str(), new.code, now])?;
    if let Some(old) = old {
        count(tx, &owner, record.accepted_at_ms, &old, -1)?;
    }
    count(tx, &owner, record.accepted_at_ms, &new, 1)
}

fn insert_from_record(
    tx: &Transaction<'_>,
    record: &MessageRecord,
    tally: &Tally,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO message_index (id, tenant, api_key_id, accepted_at, recipient, batch_id,
             channel, status, code, segments, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        record.id,
        record.tenant,
        record.api_key_id,
        record.accepted_at_ms,
        record.to,
        record.batch_id,
        tally.channel,
        tally.status.as_str(),
        tally.code,
        tally.segments,
        now
    ])?;
    Ok(())
}

/// The WHERE clause and parameters of `search` (always the owner's rows).
fn conditions(search: &Search) -> (String, Vec<Sql>) {
    let mut clauses = vec!["m.tenant = ?".to_owned()];
    let mut values = vec![Sql::Text(search.owner.tenant.clone())];
    let f = &search.filters;
    let mut equal = |column: &str, value: Option<String>| {
        if let Some(v) = value {
            clauses.push(format!("m.{column} = ?"));
            values.push(Sql::Text(v));
        }
    };
    equal("api_key_id", search.owner.api_key_id.clone());
    equal("recipient", f.to.clone());
    equal("status", f.status.map(|s| s.as_str().to_owned()));
    equal("channel", f.channel.clone());
    equal("sender", f.from.clone());
    equal("batch_id", f.batch_id.clone());
    if let Some(since) = f.since_ms {
        clauses.push("m.accepted_at >= ?".into());
        values.push(Sql::Integer(since));
    }
    if let Some(until) = f.until_ms {
        clauses.push("m.accepted_at < ?".into());
        values.push(Sql::Integer(until));
    }
    if let Some(after) = &search.after {
        clauses.push("(m.accepted_at, m.id) < (?, ?)".into());
        values.push(Sql::Integer(after.accepted_at_ms));
        values.push(Sql::Text(after.id.clone()));
    }
    (clauses.join(" AND "), values)
}

/// The SQL of a page of `search` (its query plan is what `explain` shows).
fn page_sql(search: &Search) -> (String, Vec<Sql>) {
    let (clauses, mut values) = conditions(search);
    values.push(Sql::Integer(search.limit as i64));
    (
        format!(
            "SELECT m.id, m.accepted_at, s.record, e.body FROM message_index m
             LEFT JOIN statuses s ON s.id = m.id
             LEFT JOIN envelopes e ON e.id = m.id
             WHERE {clauses}
             ORDER BY m.accepted_at DESC, m.id DESC LIMIT ?"
        ),
        values,
    )
}

/// A page of `search`, newest first.
pub fn list(conn: &Connection, search: &Search) -> rusqlite::Result<Found> {
    let (sql, values) = page_sql(search);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(values), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let (mut found, mut read, mut last) = (Found::default(), 0, None);
    for row in rows {
        let (id, accepted_at_ms, record, body) = row?;
        read += 1;
        last = Some(Position { accepted_at_ms, id });
        if let Some(record) = read_record(record, body) {
            found.records.push(record);
        }
    }
    // A full page: more may follow its last row.
    found.next = last.filter(|_| read == search.limit);
    Ok(found)
}

/// A listed message's record: its status row, or while it waits in the
/// queue unattempted, its envelope.
fn read_record(record: Option<String>, body: Option<String>) -> Option<MessageRecord> {
    if let Some(json) = record {
        return serde_json::from_str(&json).ok();
    }
    let envelope = Envelope::from_json(&body?).ok()?;
    Some(MessageRecord::accepted(&MessageInfo::of(&envelope)))
}

/// The plan SQLite chooses for a page of `search`: one line per step.
pub fn explain(conn: &Connection, search: &Search) -> rusqlite::Result<Vec<String>> {
    let (sql, values) = page_sql(search);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    stmt.query_map(params_from_iter(values), |r| r.get::<_, String>(3))?
        .collect()
}

/// The counters of `query`'s owner in its range, summed per series bucket
/// (over the whole range without a series).
pub fn counts(conn: &Connection, query: &StatsQuery) -> rusqlite::Result<Vec<Bucket>> {
    // Without a series, one bucket spans the range: the totals are summed
    // in SQL, not minute by minute in Rust.
    let step = query
        .bucket_ms
        .unwrap_or((query.until_ms - query.since_ms).max(crate::search::MINUTE_MS));
    // A bucket that starts before `since` (a series' first) is counted from `since`.
    let mut sql =
        "SELECT MAX((minute / ?1) * ?1, ?3), channel, status, code, SUM(count), SUM(segments)
                   FROM message_counts WHERE tenant = ?2 AND minute >= ?3 AND minute < ?4"
            .to_owned();
    let mut values = vec![
        Sql::Integer(step),
        Sql::Text(query.owner.tenant.clone()),
        Sql::Integer(query.since_ms),
        Sql::Integer(query.until_ms),
    ];
    if let Some(key) = &query.owner.api_key_id {
        sql.push_str(" AND api_key_id = ?5");
        values.push(Sql::Text(key.clone()));
    }
    if let Some(channel) = &query.channel {
        sql.push_str(&format!(" AND channel = ?{}", values.len() + 1));
        values.push(Sql::Text(channel.clone()));
    }
    sql.push_str(" GROUP BY 1, 2, 3, 4");
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map(params_from_iter(values), |r| {
        Ok(Bucket {
            at_ms: r.get(0)?,
            channel: r.get(1)?,
            status: r.get(2)?,
            code: r.get(3)?,
            count: r.get(4)?,
            segments: r.get(5)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use crate::search::{Filters, Owner, Position, Search};
    use crate::status::Status;

    fn search(filters: Filters, key: Option<&str>) -> Search {
        Search {
            owner: Owner {
                tenant: "default".into(),
                api_key_id: key.map(str::to_owned),
            },
            filters,
            limit: 100,
            after: Some(Position {
                accepted_at_ms: 1,
                id: "x".into(),
            }),
        }
    }

    /// Each filter reads its own index in order: no table scan, no sort.
    /// (The README shows these plans.)
    #[test]
    fn each_filter_reads_its_index_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::store::Store::open(dir.path(), 0).unwrap();
        let text = |v: &str| Some(v.to_owned());
        let cases = [
            (Filters::default(), "message_index_time"),
            (
                Filters {
                    to: text("+14155550123"),
                    ..Filters::default()
                },
                "message_index_to",
            ),
            (
                Filters {
                    status: Some(Status::Failed),
                    ..Filters::default()
                },
                "message_index_status",
            ),
            (
                Filters {
                    channel: text("sms"),
                    ..Filters::default()
                },
                "message_index_channel",
            ),
            (
                Filters {
                    from: text("Herald"),
                    ..Filters::default()
                },
                "message_index_sender",
            ),
            (
                Filters {
                    batch_id: text("b1"),
                    ..Filters::default()
                },
                "message_index_batch",
            ),
            (
                Filters {
                    since_ms: Some(5),
                    until_ms: Some(9),
                    ..Filters::default()
                },
                "message_index_time",
            ),
        ];
        for (filters, index) in cases {
            for key in [None, Some("ops")] {
                let plan = store.explain(&search(filters.clone(), key)).unwrap();
                println!("{filters:?} key {key:?}:\n  {}", plan.join("\n  "));
                let first = &plan[0];
                assert!(
                    first.starts_with("SEARCH m USING ") && first.contains(index),
                    "{filters:?}: {plan:?}"
                );
                assert!(
                    !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                    "{filters:?} sorts: {plan:?}"
                );
            }
        }
    }
}
