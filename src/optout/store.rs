//! Where opt-outs live: the seam the gateway's admission, the pipeline's
//! check before each send, the opt-out API and the webhooks' STOP/START use.
//! Both status stores keep them (SQLite's `opt_outs` table, DynamoDB's
//! `optout#` items).

use futures_util::future::BoxFuture;

use super::{OptOut, OptOutUpdate};
use crate::status::error::StoreError;

/// Reads and changes opt-outs. Changes are idempotent and ordered by
/// [`super::apply_in_order`]'s rules, whatever order they arrive in.
pub trait OptOutStore: Send + Sync + std::fmt::Debug + 'static {
    /// `tenant`'s opt-out of `number` (E.164), if any, as last written.
    fn opt_out<'a>(
        &'a self,
        tenant: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<Option<OptOut>, StoreError>>;

    /// Applies opt-out changes, emitting a `recipient.opt-out` event for each
    /// one that changed something.
    fn change_opt_outs(&self, updates: Vec<OptOutUpdate>) -> BoxFuture<'_, Result<(), StoreError>>;
}
