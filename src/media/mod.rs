//! Media kept by Herald: uploads (`POST /api/v1/media`) checked against
//! what WhatsApp accepts ([`kinds`]), read to disk as they arrive
//! ([`spool`]) and kept by content per tenant behind the [`MediaStore`]
//! seam: files under `HERALD_DATA_DIR` ([`files`]).

pub mod files;
pub mod inbound;
pub mod kinds;
pub mod s3;
pub mod spool;

use std::path::{Path, PathBuf};
use std::pin::Pin;

use axum::body::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use futures_util::future::BoxFuture;

/// What Herald knows of a kept file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfo {
    /// Herald's id: the same bytes from the same tenant are the same id.
    pub media_id: String,
    /// The tenant it belongs to: only its keys (and admins) see it.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub tenant: String,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Its type, as WhatsApp names it.
    pub mime_type: String,
    /// The name it was uploaded with, when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub filename: Option<String>,
    /// When it was first kept, Unix ms.
    #[serde(default)]
    pub created_at_ms: i64,
}

impl MediaInfo {
    /// The answer to an upload: what a client needs, not the tenant.
    pub fn view(&self) -> serde_json::Value {
        let mut view = serde_json::json!({
            "mediaId": self.media_id,
            "sha256": self.sha256,
            "size": self.size,
            "mimeType": self.mime_type,
        });
        if let Some(name) = &self.filename {
            view["filename"] = name.as_str().into();
        }
        view
    }
}

/// The id of `tenant`'s bytes whose digest is `sha256`: `m` and 32 hex
/// digits of a digest of both, so the same bytes of two tenants have two
/// ids and an id says nothing of its bytes.
pub fn media_id(tenant: &str, sha256: &str) -> String {
    let digest = Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0])
        .chain_update(sha256.as_bytes())
        .finalize();
    format!("m{}", &spool::hex(&digest)[..32])
}

/// True for a string that could be a media id (checked before any lookup).
pub fn is_media_id(id: &str) -> bool {
    id.len() == 33
        && id.starts_with('m')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A kept file's bytes, as they are read.
pub type MediaBody = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct MediaError {
    context: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl MediaError {
    /// `context`, caused by `source`.
    pub fn new(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            context,
            source: Box::new(source),
        }
    }
}

/// Where media is kept.
pub trait MediaStore: Send + Sync + std::fmt::Debug + 'static {
    /// Where uploads are spooled before [`MediaStore::keep`].
    fn spool_dir(&self) -> &Path;
    /// Keeps the spooled file `file` as `info` (moving it); when the id is
    /// kept already, the file is dropped and the kept one's info returned.
    fn keep(&self, info: MediaInfo, file: PathBuf) -> BoxFuture<'_, Result<MediaInfo, MediaError>>;
    /// What is kept as `id`.
    fn info<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<MediaInfo>, MediaError>>;
    /// The bytes of `id`, with its info.
    fn open<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(MediaInfo, MediaBody)>, MediaError>>;
    /// Forgets `id`: `Ok(false)` when nothing was kept.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, MediaError>>;
    /// The id `account` (a sending number) gave `id` when it was uploaded
    /// there, with when, Unix ms.
    fn uploaded<'a>(
        &'a self,
        id: &'a str,
        account: &'a str,
    ) -> BoxFuture<'a, Result<Option<Uploaded>, MediaError>>;
    /// Remembers (`Some`) or forgets (`None`) `id`'s upload to `account`.
    fn set_uploaded<'a>(
        &'a self,
        id: &'a str,
        account: &'a str,
        upload: Option<Uploaded>,
    ) -> BoxFuture<'a, Result<(), MediaError>>;
}

/// Media uploaded to a provider's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    /// The provider's id for it.
    pub provider_id: String,
    /// When it was uploaded, Unix ms.
    pub at_ms: i64,
}

/// How long an upload is reused: WhatsApp keeps one 30 days.
pub const REUSE_FOR_MS: i64 = 29 * 86_400_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_per_tenant_and_look_like_ids() {
        let a = media_id("acme", "00ff");
        assert_eq!(a, media_id("acme", "00ff"));
        assert_ne!(a, media_id("globex", "00ff"));
        assert!(is_media_id(&a), "{a}");
        assert!(!is_media_id("m../etc/passwd"));
        assert!(!is_media_id(&a.to_uppercase()));
    }
}
