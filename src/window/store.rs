//! Where windows live: both status stores (SQLite's `windows` table,
//! DynamoDB's `window#` items). A person's inbound message is noted with the
//! statuses it comes with (the status store's `record`); this seam
//! reads a window and closes one.

use futures_util::future::BoxFuture;

use super::{Closure, Received, Window};
use crate::status::error::StoreError;

/// Reads and closes windows. Both are idempotent and keep the latest time.
pub trait WindowStore: Send + Sync + std::fmt::Debug + 'static {
    /// The window of `person` (E.164) with the business number `number_id`.
    fn window<'a>(
        &'a self,
        number_id: &'a str,
        person: &'a str,
    ) -> BoxFuture<'a, Result<Window, StoreError>>;

    /// Notes that Meta said these windows are closed (131047).
    fn close_windows(&self, closures: Vec<Closure>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Who received the inbound WhatsApp message `provider_message_id`
    /// (recorded with the statuses), if it was recorded.
    fn received<'a>(
        &'a self,
        provider_message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Received>, StoreError>>;
}
