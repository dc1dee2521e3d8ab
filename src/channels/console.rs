//! The console channel: prints the exact request body its envelope's channel
//! would send, one JSON line per message on stdout, for development without
//! provider credentials. Logs go to stderr, so stdout holds only these lines.

use std::io::Write;
use std::time::Duration;

use super::{Provider, console_answer};
use crate::channels::pacing::ThroughputLimiter;
use crate::channels::provider::{FailureClass, ProviderError};
use crate::contract::Envelope;
use futures_util::future::BoxFuture;

/// Writes one line per delivered message to stdout.
#[derive(Debug, Clone, Default)]
pub struct ConsoleChannel;

impl ConsoleChannel {
    /// Prints the request body for `envelope`; returns the id the provider
    /// would answer with (see [`console_answer`]).
    pub fn print(&self, envelope: &Envelope) -> std::io::Result<String> {
        let (body, id) = console_answer(envelope);
        let mut line = serde_json::to_vec(&body).expect("a JSON value always serialises");
        line.push(b'\n');
        // One write_all of a whole line under the stdout lock: concurrent
        // deliveries never interleave within a line.
        std::io::stdout().lock().write_all(&line)?;
        Ok(id)
    }
}

impl Provider for ConsoleChannel {
    fn describe(&self) -> String {
        "console (stdout)".to_owned()
    }

    fn name(&self) -> &'static str {
        "console"
    }

    fn send<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            self.print(envelope).map_err(|e| {
                ProviderError::new(FailureClass::Retryable, format!("stdout write failed: {e}"))
                    .caused_by(e)
            })
        })
    }

    fn pacer(&self) -> Option<&ThroughputLimiter> {
        None
    }

    fn call_timeout(&self) -> Duration {
        Duration::ZERO
    }
}
