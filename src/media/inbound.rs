//! Keeping the media a person sent, for each tenant the message belongs to
//! (each its own copy and id): shared by the embedded default's downloader
//! and, with SNS, the consumer's media jobs.

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{MediaBody, MediaInfo, MediaStore, kinds, spool};

/// How long each chunk of a download may take.
const CHUNK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the media was not kept.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt.
    Again(String),
    /// Not (larger than WhatsApp allows): the event goes with `media.error`.
    Final(String),
}

impl Failure {
    /// The reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::Again(r) | Self::Final(r) => r,
        }
    }
}

/// Reads `body` (of type `mime`) to disk and keeps it for each of
/// `tenants`; the event's `media`: `{"mediaId", "mediaIds", "mimeType",
/// "sha256", "size"}`.
pub async fn keep_for_tenants(
    store: &dyn MediaStore,
    tenants: &[String],
    mime: &str,
    filename: Option<String>,
    body: MediaBody,
) -> Result<Value, Failure> {
    let essence = mime.split(';').next().unwrap_or_default().trim().to_owned();
    let limit = kinds::accepted(&essence).map_or(100 << 20, |(_, a)| a.max_bytes);
    let spooled = spool::spool(body, store.spool_dir(), limit, CHUNK_WAIT)
        .await
        .map_err(|e| match e {
            spool::SpoolError::TooLarge { .. } => Failure::Final(crate::telemetry::chain(&e)),
            e => Failure::Again(crate::telemetry::chain(&e)),
        })?;
    let default = [crate::contract::DEFAULT_TENANT.to_owned()];
    let tenants = if tenants.is_empty() {
        &default[..]
    } else {
        tenants
    };
    let mut ids = serde_json::Map::new();
    // `spooled` removes the download when this returns; each tenant keeps
    // a copy, which `keep` takes or removes.
    let file = spooled.path();
    for (i, tenant) in tenants.iter().enumerate() {
        let copy = file.with_extension(format!("copy-{i}"));
        if let Err(e) = tokio::fs::copy(file, &copy).await {
            let _ = tokio::fs::remove_file(&copy).await;
            return Err(Failure::Again(e.to_string()));
        }
        let info = MediaInfo {
            media_id: super::media_id(tenant, &spooled.sha256),
            tenant: tenant.clone(),
            sha256: spooled.sha256.clone(),
            size: spooled.size,
            mime_type: essence.clone(),
            filename: filename.clone(),
            created_at_ms: crate::clock::now_ms(),
        };
        let kept = store
            .keep(info, copy)
            .await
            .map_err(|e| Failure::Again(crate::telemetry::chain(&e)))?;
        ids.insert(tenant.clone(), kept.media_id.into());
    }
    let first = ids.values().next().cloned().unwrap_or_default();
    Ok(
        json!({"mediaId": first, "mediaIds": ids, "mimeType": essence,
        "sha256": spooled.sha256, "size": spooled.size}),
    )
}

/// A download's body as kept media reads it.
pub fn body_of(response: reqwest::Response) -> MediaBody {
    Box::pin(
        response
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other)),
    )
}
