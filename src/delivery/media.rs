//! Sends that refer to kept media (`{"image": {"mediaId": "m…"}}`, also in
//! template parameters): before the provider is asked, each `mediaId`
//! becomes the provider's own `id` — uploaded to the sending number once and
//! reused for 29 days ([`REUSE_FOR_MS`]; WhatsApp keeps an upload 30), then
//! uploaded again, as it is when the provider says it no longer knows the
//! id ([`Pipeline::media_gone`]). The upload happens before the pacing slot
//! is taken, so a large file does not hold one.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::{Decision, FailureClass, Pipeline, ProviderState};
use crate::contract::Envelope;
use crate::media::{MediaStore, REUSE_FOR_MS, Uploaded};

/// Herald's error code for a send whose media is not kept (deleted).
pub const MEDIA_NOT_FOUND: &str = "media-not-found";
/// Herald's error code for a send by `mediaId` on a channel without uploads.
pub const MEDIA_NOT_SUPPORTED: &str = "media-not-supported";

/// An upload that failed and will be tried again does not count against
/// the message (the message itself was not sent), as a hold does not: an
/// outage of the upload endpoint does not dead-letter media sends.
fn uncounted(decision: Decision) -> Decision {
    match decision {
        Decision::Retry {
            after,
            class,
            code,
            reason,
            ..
        } => Decision::Retry {
            after,
            class,
            code,
            reason: format!("media upload: {reason}"),
            counted: false,
        },
        other => other,
    }
}

/// An envelope whose media ids were given the provider's.
pub(super) struct Resolved {
    /// The envelope as the provider gets it.
    pub envelope: Envelope,
    /// The media ids that reused an earlier upload.
    pub reused: Vec<String>,
}

impl Pipeline {
    /// Resolves `mediaId`s from `store` (the embedded default's files).
    pub fn with_media(mut self, store: Arc<dyn MediaStore>) -> Self {
        self.media = Some(store);
        self
    }

    /// `envelope` with every `mediaId` replaced by the provider's id;
    /// `Ok(None)` when it has none.
    pub(super) async fn resolve_media(
        &self,
        provider: &ProviderState,
        envelope: &Envelope,
        attempt: u32,
    ) -> Result<Option<Resolved>, Decision> {
        let mut ids = Vec::new();
        collect(&envelope.message, &mut ids);
        if ids.is_empty() {
            return Ok(None);
        }
        let mut provider_ids = HashMap::new();
        let mut reused = Vec::new();
        for id in ids {
            let (provider_id, was_reused) =
                self.provider_id(provider, envelope, &id, attempt).await?;
            if was_reused {
                reused.push(id.clone());
            }
            provider_ids.insert(id, provider_id);
        }
        let mut resolved = envelope.clone();
        replace(&mut resolved.message, &provider_ids);
        Ok(Some(Resolved {
            envelope: resolved,
            reused,
        }))
    }

    /// The provider's id for media `id`, and whether it reused an upload.
    async fn provider_id(
        &self,
        provider: &ProviderState,
        envelope: &Envelope,
        id: &str,
        attempt: u32,
    ) -> Result<(String, bool), Decision> {
        let account = provider.channel.account().to_owned();
        let store_failed = |e: crate::media::MediaError| Decision::Retry {
            after: self.retry.delay(FailureClass::Retryable, attempt, None),
            class: FailureClass::Retryable,
            code: None,
            reason: format!("the media store failed: {}", crate::telemetry::chain(&e)),
            counted: true,
        };
        let Some(store) = &self.media else {
            return Err(self.gone(envelope, attempt, id).await);
        };
        let now = crate::clock::now_ms();
        if let Some(up) = store.uploaded(id, &account).await.map_err(store_failed)?
            && now - up.at_ms < REUSE_FOR_MS
        {
            return Ok((up.provider_id, true));
        }
        let Some((info, body)) = store.open(id).await.map_err(store_failed)? else {
            return Err(self.gone(envelope, attempt, id).await);
        };
        if info.tenant != envelope.tenant {
            // The edge checked it; an envelope from elsewhere is not trusted.
            return Err(self.gone(envelope, attempt, id).await);
        }
        let Some(upload) = provider.channel.upload(&info, body) else {
            let reason = format!("{} takes no media uploads", provider.channel.name());
            return Err(self
                .refuse(envelope, attempt, MEDIA_NOT_SUPPORTED, reason)
                .await);
        };
        let provider_id = upload
            .await
            .map_err(|e| uncounted(self.decide(e, attempt)))?;
        let record = Uploaded {
            provider_id: provider_id.clone(),
            at_ms: now,
        };
        if let Err(e) = store.set_uploaded(id, &account, Some(record)).await {
            tracing::warn!(error.message = %crate::telemetry::chain(&e), "uploaded, but not remembered: the next send uploads it again");
        }
        Ok((provider_id, false))
    }

    /// A message whose media is not kept (deleted since): failed, not sent.
    async fn gone(&self, envelope: &Envelope, attempt: u32, id: &str) -> Decision {
        let reason = format!("media {id} is not kept here (deleted?)");
        self.refuse(envelope, attempt, MEDIA_NOT_FOUND, reason)
            .await
    }

    /// After a failed call whose code may mean an upload the provider no
    /// longer knows: forgets the reused uploads and holds the message for
    /// one more attempt (which uploads again); `None` otherwise.
    pub(super) async fn media_gone(
        &self,
        provider: &ProviderState,
        resolved: Option<&Resolved>,
        decision: &Decision,
    ) -> Option<Decision> {
        let resolved = resolved.filter(|r| !r.reused.is_empty())?;
        let code = decision.code()?;
        if !provider.channel.media_gone(code) {
            return None;
        }
        let store = self.media.as_ref()?;
        let account = provider.channel.account();
        for id in &resolved.reused {
            if let Err(e) = store.set_uploaded(id, account, None).await {
                // Not forgotten: another attempt would reuse it again.
                tracing::warn!(error.message = %crate::telemetry::chain(&e), "cannot forget a media upload");
                return None;
            }
        }
        Some(Decision::Retry {
            after: std::time::Duration::ZERO,
            class: FailureClass::Retryable,
            code: Some(code),
            reason: format!(
                "the provider no longer knows a reused media upload (error {code}): it is uploaded again"
            ),
            counted: false,
        })
    }
}

/// Every `mediaId` in a message object, each once.
pub fn collect(value: &Value, ids: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("mediaId")
                && !ids.contains(id)
            {
                ids.push(id.clone());
            }
            map.values().for_each(|v| collect(v, ids));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, ids)),
        _ => {}
    }
}

/// Replaces each `{"mediaId": m, …}` with `{"id": <provider id>, …}`.
fn replace(value: &mut Value, provider_ids: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.remove("mediaId") {
                let provider_id = provider_ids.get(&id).cloned().unwrap_or(id);
                map.insert("id".into(), Value::String(provider_id));
            }
            map.values_mut().for_each(|v| replace(v, provider_ids));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace(v, provider_ids)),
        _ => {}
    }
}
