//! Where templates are kept, so a restarted or new process checks sends
//! before its first sync: the embedded database's `templates` table, or the
//! DynamoDB table's `templates#<waba-id>` items (one per name and language).

use futures_util::future::BoxFuture;

use super::{StatusChange, Template};
use crate::status::error::StoreError;

/// An account's templates as last stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// When they were last listed from Graph (Unix ms); `None`: never.
    pub synced_ms: Option<i64>,
    /// The templates, each name and language once.
    pub templates: Vec<Template>,
}

/// Keeps each account's templates.
pub trait TemplateStore: Send + Sync + std::fmt::Debug + 'static {
    /// `waba_id`'s templates.
    fn templates<'a>(&'a self, waba_id: &'a str) -> BoxFuture<'a, Result<Stored, StoreError>>;

    /// Replaces `waba_id`'s templates with a sync's list, listed at `synced_ms`.
    fn replace_templates<'a>(
        &'a self,
        waba_id: &'a str,
        templates: Vec<Template>,
        synced_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Applies a status webhook: the template's status, or the template
    /// itself (parameters unknown) when no sync has listed it yet.
    fn change_template_status(&self, change: StatusChange)
    -> BoxFuture<'_, Result<(), StoreError>>;

    /// Whether this process (`holder`) lists `waba_id` now: at most one
    /// process of the fleet does within `every`. A single process always does.
    fn claim_template_sync<'a>(
        &'a self,
        _waba_id: &'a str,
        _holder: &'a str,
        _every: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async { Ok(true) })
    }
}

/// `change` applied to `templates` (the matching entry's status, or a new
/// entry); what both stores do.
pub fn apply_status(templates: &mut Vec<Template>, change: &StatusChange) {
    match templates
        .iter_mut()
        .find(|t| t.name == change.name && t.language == change.language)
    {
        Some(t) => t.status.clone_from(&change.status),
        None => templates.push(Template::from_status(change)),
    }
}
