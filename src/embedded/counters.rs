//! What the writer thread keeps in memory for everyone else to read
//! without a query: the queue's counters, the committed opt-outs and the
//! windows read lately.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::optout::OptOut;

/// Figures the writer keeps up to date after each commit, read without a query.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) depth: AtomicU64,
    pub(super) dead_letters: AtomicU64,
    /// Reads of the database for `/health` (tests check it stays cached).
    pub(super) health_reads: AtomicU64,
    /// Operators' and tests' switch: every write fails as if the disk were full.
    pub(super) simulate_full_disk: AtomicBool,
    /// Tests' switch: the writer pauses this many ms after each commit, before
    /// answering (a slow fsync).
    pub(super) simulate_slow_commit_ms: AtomicU64,
    /// Status changes and inbound messages queue events (`EVENTS_WEBHOOK_URL`).
    pub(super) emit_events: AtomicBool,
    /// How long statuses are kept, ms (`STATUS_TTL_DAYS`).
    pub(super) status_ttl_ms: AtomicU64,
    /// Every opt-out, as committed (see [`super::opt_outs`]): written by the writer
    /// thread after each commit, read by the gateway and the worker.
    pub(super) opt_outs: std::sync::RwLock<HashMap<String, OptOut>>,
    /// Windows read lately, as committed: filled by the writer thread when
    /// it answers a read, dropped by it after a commit that changes them, so
    /// the gateway's check at the edge costs no query and is never stale.
    pub(super) windows: std::sync::Mutex<HashMap<(String, String), crate::window::Window>>,
}

/// Most windows [`Counters::windows`] holds; past it, it starts over.
pub(super) const MAX_CACHED_WINDOWS: usize = 100_000;

impl Counters {
    pub(super) fn windows(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), crate::window::Window>> {
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
