//! The embedded default: a durable queue on local disk and an in-process worker
//! that delivers through the same pipeline as `herald-consumer`. Used when no
//! `SNS_TOPIC_ARN` is set, so Herald runs whole on one machine.
//!
//! One writer thread owns the SQLite connection and applies requests in batches:
//! every enqueue and settlement that arrives while a commit is running joins the
//! next transaction (group commit), so durability costs one fsync per batch
//! rather than one per message.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

pub mod store;
pub mod worker;

pub use store::{DeadLetter, Leased, Stats};
pub use worker::Worker;

use store::Store;

/// Most requests committed in one transaction.
const MAX_GROUP: usize = 1024;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database could not be opened: a bad or unwritable `HERALD_DATA_DIR`,
    /// or another gateway holds it.
    #[error("cannot open the embedded queue in {dir}: {source}")]
    Open {
        dir: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read or write failed (disk full, I/O error).
    #[error("embedded queue storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// The writer thread has stopped.
    #[error("the embedded queue is shut down")]
    Closed,
}

impl QueueError {
    /// True when the disk (or the configured size cap) is full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Storage(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DiskFull)
    }
}

/// How a leased envelope's delivery ended.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// Delivered: remove it.
    Delivered,
    /// Try again at `due_ms` (Unix ms).
    Retry { due_ms: i64, error: String },
    /// Give up: move it to the dead-letter table.
    DeadLetter { reason: String },
}

enum Request {
    Enqueue {
        id: String,
        body: String,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    Settle {
        id: String,
        settlement: Settlement,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    Lease {
        lease_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Leased>, QueueError>>,
    },
    Stats {
        reply: oneshot::Sender<Result<Stats, QueueError>>,
    },
    DeadLetters {
        limit: usize,
        reply: oneshot::Sender<Result<Vec<DeadLetter>, QueueError>>,
    },
}

/// A handle to the queue; cheap to clone. The writer thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct EmbeddedQueue {
    requests: mpsc::UnboundedSender<Request>,
    data_dir: PathBuf,
    /// Wakes the worker when an envelope is enqueued.
    pub(crate) enqueued: std::sync::Arc<tokio::sync::Notify>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl EmbeddedQueue {
    /// Opens the queue under `data_dir` (created if missing) and starts its writer
    /// thread. `max_bytes` > 0 caps the database's size.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Result<Self, QueueError> {
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| QueueError::Open {
            dir: data_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_error(Box::new(e)))?;
        let data_dir = std::fs::canonicalize(data_dir).map_err(|e| open_error(Box::new(e)))?;
        let store = Store::open(&data_dir, max_bytes).map_err(|e| open_error(Box::new(e)))?;
        let (requests, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("herald-queue-writer".into())
            .spawn(move || writer_loop(store, receiver))
            .map_err(|e| open_error(Box::new(e)))?;
        Ok(Self {
            requests,
            data_dir,
            enqueued: Default::default(),
        })
    }

    /// Where the database lives (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueueError>>) -> Request,
    ) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Stores an envelope durably; returns once its transaction is committed.
    pub async fn enqueue(&self, id: String, body: String) -> Result<(), QueueError> {
        self.call(|reply| Request::Enqueue { id, body, reply })
            .await?;
        self.enqueued.notify_one();
        Ok(())
    }

    /// Leases up to `limit` due envelopes for `lease_ms`.
    pub async fn lease(&self, lease_ms: i64, limit: usize) -> Result<Vec<Leased>, QueueError> {
        self.call(|reply| Request::Lease {
            lease_ms,
            limit,
            reply,
        })
        .await
    }

    /// Records how a leased envelope's delivery ended.
    pub async fn settle(&self, id: String, settlement: Settlement) -> Result<(), QueueError> {
        self.call(|reply| Request::Settle {
            id,
            settlement,
            reply,
        })
        .await
    }

    /// Depth, oldest age and dead letters.
    pub async fn stats(&self) -> Result<Stats, QueueError> {
        self.call(|reply| Request::Stats { reply }).await
    }

    /// The newest dead letters.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.call(|reply| Request::DeadLetters { limit, reply })
            .await
    }
}

/// Applies requests until every handle is dropped. Writes that arrive together
/// share one transaction; if it fails, each is retried alone so that one bad
/// write (say, past the size cap) does not fail its neighbours.
fn writer_loop(mut store: Store, mut receiver: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let (writes, reads): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .partition(|r| matches!(r, Request::Enqueue { .. } | Request::Settle { .. }));
        commit_writes(&mut store, writes);
        for read in reads {
            answer_read(&mut store, read);
        }
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, request: &Request, now: i64) -> rusqlite::Result<()> {
    match request {
        Request::Enqueue { id, body, .. } => Store::insert(tx, id, body, now),
        Request::Settle {
            id,
            settlement: Settlement::Delivered,
            ..
        } => Store::remove(tx, id),
        Request::Settle {
            id,
            settlement: Settlement::Retry { due_ms, error },
            ..
        } => Store::reschedule(tx, id, *due_ms, error),
        Request::Settle {
            id,
            settlement: Settlement::DeadLetter { reason },
            ..
        } => Store::dead_letter(tx, id, reason, now),
        _ => Ok(()),
    }
}

fn reply_write(request: Request, result: Result<(), QueueError>) {
    if let Request::Enqueue { reply, .. } | Request::Settle { reply, .. } = request {
        let _ = reply.send(result);
    }
}

fn commit_writes(store: &mut Store, writes: Vec<Request>) {
    if writes.is_empty() {
        return;
    }
    let now = now_ms();
    let grouped = store.transaction(|tx| writes.iter().try_for_each(|w| apply(tx, w, now)));
    if grouped.is_ok() {
        writes.into_iter().for_each(|w| reply_write(w, Ok(())));
        return;
    }
    // The group failed and was rolled back: try each write alone.
    for w in writes {
        let result = store
            .transaction(|tx| apply(tx, &w, now))
            .map_err(QueueError::Storage);
        reply_write(w, result);
    }
}

fn answer_read(store: &mut Store, request: Request) {
    let now = now_ms();
    match request {
        Request::Lease {
            lease_ms,
            limit,
            reply,
        } => {
            let _ = reply.send(store.lease(now, lease_ms, limit).map_err(QueueError::from));
        }
        Request::Stats { reply } => {
            let _ = reply.send(store.stats(now).map_err(QueueError::from));
        }
        Request::DeadLetters { limit, reply } => {
            let _ = reply.send(store.dead_letters(limit).map_err(QueueError::from));
        }
        write => reply_write(write, Err(QueueError::Closed)),
    }
}
