//! What a queue handle asks of the writer thread: one request per
//! operation, each with the channel its answer goes back on.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::oneshot;

use super::envelopes::{self, Settlement};
use super::error::QueueError;
use super::outbox::{EventOutcome, OutboxEvent};
use super::store::{DeadLetter, DeadLetterKind, Leased};
use crate::optout::OptOutUpdate;
use crate::status::{Inbound, MessageRecord, Update};
use crate::tenants::Scope;

/// What a queue handle asks of the writer.
pub(crate) enum Request {
    /// The expiry timer's tick.
    Expire,
    /// The tenants' weights in the lease.
    Shares(std::collections::HashMap<String, u32>),
    Enqueue {
        row: envelopes::Row,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    Statuses {
        updates: Vec<Update>,
        inbound: Vec<Inbound>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    OptOuts {
        updates: Vec<OptOutUpdate>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    CloseWindows {
        closures: Vec<crate::window::Closure>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    GetWindow {
        number_id: String,
        person: String,
        reply: oneshot::Sender<Result<crate::window::Window, QueueError>>,
    },
    GetReceived {
        provider_id: String,
        reply: oneshot::Sender<Result<Option<crate::window::Received>, QueueError>>,
    },
    Templates {
        write: super::templates::TemplateWrite,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    GetTemplates {
        waba_id: String,
        reply: oneshot::Sender<Result<crate::templates::store::Stored, QueueError>>,
    },
    /// Redrive (`true`) or delete a dead letter; the reply says whether it
    /// existed for that key.
    DeadLetter {
        kind: DeadLetterKind,
        id: String,
        scope: Scope,
        redrive: bool,
        found: Arc<AtomicBool>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    LeaseDownloads {
        hold_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<super::downloads::Job>, QueueError>>,
    },
    SettleDownload {
        provider_id: String,
        outcome: super::downloads::Outcome,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    /// Cancel messages; the outcomes are left in `outcome`.
    Cancel {
        ids: Vec<String>,
        scope: Scope,
        batch: Option<String>,
        outcome: Arc<std::sync::Mutex<Vec<crate::status::Cancellation>>>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    SettleEvent {
        id: String,
        outcome: EventOutcome,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    LeaseEvents {
        hold_ms: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<OutboxEvent>, QueueError>>,
    },
    GetStatus {
        id: String,
        scope: Scope,
        reply: oneshot::Sender<Result<Option<MessageRecord>, QueueError>>,
    },
    Search {
        search: crate::search::Search,
        reply: oneshot::Sender<Result<crate::search::Found, QueueError>>,
    },
    Counts {
        query: crate::search::StatsQuery,
        reply: oneshot::Sender<Result<Vec<crate::search::Bucket>, QueueError>>,
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
    OldestCreated {
        reply: oneshot::Sender<Result<(Option<i64>, u64), QueueError>>,
    },
    DeadLetters {
        kind: DeadLetterKind,
        limit: usize,
        scope: Scope,
        reply: oneshot::Sender<Result<Vec<DeadLetter>, QueueError>>,
    },
}
