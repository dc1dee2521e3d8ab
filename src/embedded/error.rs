//! Why an embedded queue operation failed.

use std::path::PathBuf;

use crate::status::StoreError;

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

impl From<QueueError> for StoreError {
    fn from(error: QueueError) -> Self {
        Self::caused_by("the embedded queue failed", error)
    }
}
