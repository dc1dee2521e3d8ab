//! Where templates are kept, so a restarted or new process checks sends
//! before its first sync: the embedded database's `templates` table, or the
//! DynamoDB table's `templates#<waba-id>` items (one per name and language).

use futures_util::future::BoxFuture;

use super::{Listing, StatusChange, Template, sendable};
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

    /// Replaces `waba_id`'s templates with a sync's listing, merged with
    /// the status webhooks that came after it began ([`merge_listing`]).
    fn replace_templates<'a>(
        &'a self,
        waba_id: &'a str,
        listing: Listing,
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

    /// Gives up this process's claim on `waba_id` (its listing failed: another
    /// gateway may list it now).
    fn release_template_sync<'a>(
        &'a self,
        _waba_id: &'a str,
        _holder: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// `change` applied to `templates` (the matching entry, or a new one);
/// what both stores and the cache do. A template that becomes sendable, or
/// whose components were edited, loses its parameters until it is listed
/// again: an edit is re-approved with a new shape, and a send in that shape
/// must not be refused meanwhile.
pub fn apply_status(templates: &mut Vec<Template>, change: &StatusChange) {
    let Some(t) = templates
        .iter_mut()
        .find(|t| t.name == change.name && t.language == change.language)
    else {
        templates.push(Template::from_status(change));
        return;
    };
    if let Some(status) = &change.status {
        t.status.clone_from(status);
    }
    if change.status.is_none() || sendable(&t.status) {
        t.parameters = None;
    }
    t.status_changed_ms = Some(change.at_ms);
}

/// A sync's listing, with what status webhooks changed in `stored` after
/// the listing began kept: their status (and their lack of parameters),
/// and the templates they added that the listing does not have yet.
pub fn merge_listing(listing: &Listing, stored: &[Template]) -> Vec<Template> {
    let newer = |t: &&Template| {
        t.status_changed_ms
            .is_some_and(|at| at >= listing.started_ms)
    };
    let mut merged = listing.templates.clone();
    for recent in stored.iter().filter(newer) {
        match merged
            .iter_mut()
            .find(|t| t.name == recent.name && t.language == recent.language)
        {
            Some(t) => {
                t.status.clone_from(&recent.status);
                t.status_changed_ms = recent.status_changed_ms;
                if recent.parameters.is_none() {
                    t.parameters = None;
                }
            }
            None => merged.push(recent.clone()),
        }
    }
    merged
}
