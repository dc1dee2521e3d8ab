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
            // A scheduled message stays listed until it is due and beyond.
            now.max(info.scheduled_for_ms.unwrap_or(0))
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

/// Adds `delta` messages of `tally` to the minute of `accepted_at_ms`. A
/// decrement of a minute whose counters expired changes nothing (no
/// negative counts).
fn count(
    tx: &Transaction<'_>,
    owner: &Counted<'_>,
    accepted_at_ms: i64,
    tally: &Tally,
    delta: i64,
) -> rusqlite::Result<()> {
    let sql = if delta < 0 {
        "UPDATE message_counts SET count = count + ?7, segments = segments + ?8
         WHERE tenant = ?1 AND minute = ?2 AND api_key_id = ?3 AND channel = ?4
           AND status = ?5 AND code = ?6 AND count > 0"
    } else {
        "INSERT INTO message_counts (tenant, minute, api_key_id, channel, status, code, count, segments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, minute, api_key_id, channel, status, code)
         DO UPDATE SET count = count + ?7, segments = segments + ?8"
    };
    tx.prepare_cached(sql)?.execute(params![
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

/// Most index rows one page examines: `SCAN_PER_ROW` per row asked for, at
/// least `MIN_SCAN`. A page whose filters match few of the rows its index
/// reads in order (a key among many sharing a tenant, two filters) stops
/// there with what it found and a cursor after the last row examined, so no
/// request holds the queue's writer for long.
const SCAN_PER_ROW: usize = 10;
const MIN_SCAN: usize = 1_000;

/// The most rows a page of `search` examines.
fn budget(search: &Search) -> usize {
    (SCAN_PER_ROW * (search.limit + 1)).max(MIN_SCAN)
}

/// The index a search reads (the most selective filter it has) and that
/// filter's value: the rows are read in that index's order.
fn chosen_index(search: &Search) -> (&'static str, Option<(&'static str, String)>) {
    let f = &search.filters;
    let candidates = [
        ("message_index_batch", "batch_id", f.batch_id.clone()),
        ("message_index_to", "recipient", f.to.clone()),
        ("message_index_sender", "sender", f.from.clone()),
        (
            "message_index_status",
            "status",
            f.status.map(|s| s.as_str().to_owned()),
        ),
        ("message_index_channel", "channel", f.channel.clone()),
    ];
    candidates
        .into_iter()
        .find_map(|(index, column, value)| value.map(|v| (index, Some((column, v)))))
        .unwrap_or(("message_index_time", None))
}

/// The scan of a page: the owner's rows in the chosen index's order, from
/// the cursor, within `since`/`until`, at most the scan budget.
fn scan_sql(search: &Search) -> (String, Vec<Sql>) {
    let (index, equal) = chosen_index(search);
    let mut clauses = vec!["tenant = ?".to_owned()];
    let mut values = vec![Sql::Text(search.owner.tenant.clone())];
    if let Some((column, value)) = equal {
        clauses.push(format!("{column} = ?"));
        values.push(Sql::Text(value));
    }
    let f = &search.filters;
    if let Some(since) = f.since_ms {
        clauses.push("accepted_at >= ?".into());
        values.push(Sql::Integer(since));
    }
    if let Some(until) = f.until_ms {
        clauses.push("accepted_at < ?".into());
        values.push(Sql::Integer(until));
    }
    if let Some(after) = &search.after {
        clauses.push("(accepted_at, id) < (?, ?)".into());
        values.push(Sql::Integer(after.accepted_at_ms));
        values.push(Sql::Text(after.id.clone()));
    }
    values.push(Sql::Integer(budget(search) as i64));
    (
        format!(
            "SELECT id, accepted_at, api_key_id, recipient, status, channel, sender, batch_id
             FROM message_index INDEXED BY {index}
             WHERE {}
             ORDER BY accepted_at DESC, id DESC LIMIT ?",
            clauses.join(" AND ")
        ),
        values,
    )
}

/// One scanned row: its place, and the columns the filters compare.
struct Scanned {
    position: Position,
    columns: [Option<String>; 6],
}

impl Scanned {
    /// True when every filter of `search` (and the owner's key) matches.
    fn matches(&self, search: &Search) -> bool {
        let f = &search.filters;
        let wanted = [
            search.owner.api_key_id.clone(),
            f.to.clone(),
            f.status.map(|s| s.as_str().to_owned()),
            f.channel.clone(),
            f.from.clone(),
            f.batch_id.clone(),
        ];
        wanted
            .iter()
            .zip(&self.columns)
            .all(|(want, have)| want.is_none() || want == have)
    }
}

/// A page of `search`, newest first (see [`SCAN_PER_ROW`] for a page that
/// stops early).
pub fn list(conn: &Connection, search: &Search) -> rusqlite::Result<Found> {
    let (sql, values) = scan_sql(search);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(values))?;
    let (mut hits, mut scanned, mut last) = (Vec::new(), 0, None);
    while let Some(r) = rows.next()? {
        let row = Scanned {
            position: Position {
                id: r.get(0)?,
                accepted_at_ms: r.get(1)?,
            },
            columns: [
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ],
        };
        scanned += 1;
        last = Some(row.position.clone());
        if row.matches(search) {
            hits.push(row.position);
            if hits.len() > search.limit {
                break;
            }
        }
    }
    let next = if hits.len() > search.limit {
        // One more matched: the page ends at its last row.
        hits.truncate(search.limit);
        hits.last().cloned()
    } else if scanned == budget(search) {
        // The budget ran out first: go on after the last row examined.
        last
    } else {
        None
    };
    let mut found = Found {
        records: Vec::with_capacity(hits.len()),
        next,
    };
    let mut read = conn.prepare_cached(
        "SELECT (SELECT record FROM statuses WHERE id = ?1),
                (SELECT body FROM envelopes WHERE id = ?1),
                (SELECT body FROM dead_letters WHERE id = ?1)",
    )?;
    for hit in &hits {
        let (record, queued, dead): (Option<String>, Option<String>, Option<String>) =
            read.query_row([&hit.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if let Some(record) = read_record(record, queued.or(dead)) {
            found.records.push(record);
        }
    }
    Ok(found)
}

/// A listed message's record: its status row, or while it waits in the
/// queue unattempted (or was dead-lettered before any attempt was
/// recorded), its envelope.
fn read_record(record: Option<String>, body: Option<String>) -> Option<MessageRecord> {
    if let Some(json) = record {
        return serde_json::from_str(&json).ok();
    }
    let envelope = Envelope::from_json(&body?).ok()?;
    Some(MessageRecord::accepted(&MessageInfo::of(&envelope)))
}

/// The plan SQLite chooses for the scan of a page of `search`: one line per step.
pub fn explain(conn: &Connection, search: &Search) -> rusqlite::Result<Vec<String>> {
    let (sql, values) = scan_sql(search);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    stmt.query_map(params_from_iter(values), |r| r.get::<_, String>(3))?
        .collect()
}

/// The counters of `query`'s owner in its range, summed per series bucket
/// (over the whole range without a series).
pub fn counts(conn: &Connection, query: &StatsQuery) -> rusqlite::Result<Vec<Bucket>> {
    let step = query.step_ms();
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
            asked_by: "ops".into(),
            after: Some(Position {
                accepted_at_ms: 1,
                id: "x".into(),
            }),
        }
    }

    /// A key whose messages are few among its tenant's: a page examines a
    /// bounded number of rows and answers with a cursor to go on.
    #[test]
    fn a_sparse_key_gets_a_short_page_and_a_cursor_not_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = super::super::store::Store::open(dir.path(), 0).unwrap();
        store
            .transaction(|tx| {
                for i in 0..3_000_i64 {
                    let key = if i == 5 { "billing" } else { "ops" };
                    let update = crate::status::Update::Message {
                        info: info(i, key),
                        status: Status::Submitted,
                        entry: crate::status::Entry::on("whatsapp", i).by_attempt(1),
                        provider_message_id: None,
                    };
                    super::super::statuses::apply(tx, &update, i, false)?;
                }
                Ok(())
            })
            .unwrap();
        let mut search = search(Filters::default(), Some("billing"));
        search.after = None;
        let first = store.search(&search).unwrap();
        assert!(first.records.is_empty(), "the newest 1,010 rows are ops'");
        let mut pages = 1;
        search.after = first.next;
        let mut found = Vec::new();
        while search.after.is_some() {
            let page = store.search(&search).unwrap();
            found.extend(page.records.iter().map(|r| r.id.clone()));
            search.after = page.next;
            pages += 1;
            assert!(pages < 10, "no end");
        }
        assert_eq!(found, [format!("m{:04}", 5)]);
        assert_eq!(pages, 3, "3,000 rows at 1,010 a page");
    }

    fn info(i: i64, key: &str) -> crate::status::MessageInfo {
        crate::status::MessageInfo {
            id: format!("m{i:04}"),
            api_key_id: key.into(),
            tenant: "default".into(),
            channel: "whatsapp".into(),
            to: "+14155550123".into(),
            callback_data: None,
            accepted_at_ms: i,
            fallback: None,
            scheduled_for_ms: None,
            batch_id: None,
            from: None,
            sms_segments: 0,
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
                    first.starts_with("SEARCH message_index USING ") && first.contains(index),
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
