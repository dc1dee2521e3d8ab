//! An upload read to a temporary file as it arrives, never whole in
//! memory: hashed (SHA-256) and counted chunk by chunk, refused as soon as
//! it passes its limit, and removed unless the store takes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why an upload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Past `limit` bytes.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit passed.
        limit: u64,
    },
    /// The client stopped sending, or its body broke off.
    #[error("the upload broke off: {0}")]
    Body(String),
    /// The temporary file could not be written.
    #[error("cannot write the upload to disk")]
    Io(#[source] std::io::Error),
}

/// An upload on disk: its file (removed on drop unless taken), digest,
/// size and first bytes.
#[derive(Debug)]
pub struct Spooled {
    path: Option<PathBuf>,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The first 32 bytes (a sticker's header).
    pub head: Vec<u8>,
}

impl Spooled {
    /// Where the file is (still removed on drop).
    pub fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("a spooled file until it is taken")
    }

    /// The file, for the store to move: it is no longer removed on drop.
    pub fn take(mut self) -> PathBuf {
        self.path.take().expect("a spooled file is taken once")
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Reads `body` into a new file in `dir`, at most `limit` bytes, waiting at
/// most `idle` for each chunk.
pub async fn spool<S, E>(
    body: S,
    dir: &Path,
    limit: u64,
    idle: Duration,
) -> Result<Spooled, SpoolError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(SpoolError::Io)?;
    let path = dir.join(format!(".upload-{}", uuid::Uuid::now_v7()));
    let mut spooled = Spooled {
        path: Some(path.clone()),
        sha256: String::new(),
        size: 0,
        head: Vec::new(),
    };
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(SpoolError::Io)?;
    let mut hasher = Sha256::new();
    futures_util::pin_mut!(body);
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return Err(SpoolError::Body("no data for too long".into())),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(SpoolError::Body(e.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        spooled.size += chunk.len() as u64;
        if spooled.size > limit {
            return Err(SpoolError::TooLarge { limit });
        }
        if spooled.head.len() < 32 {
            let want = (32 - spooled.head.len()).min(chunk.len());
            spooled.head.extend_from_slice(&chunk[..want]);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(SpoolError::Io)?;
    }
    file.sync_all().await.map_err(SpoolError::Io)?;
    spooled.sha256 = hex(&hasher.finalize());
    Ok(spooled)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
