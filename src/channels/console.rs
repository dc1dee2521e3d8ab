//! The console channel: prints the exact request body its envelope's channel
//! would send, one JSON line per message on stdout, for development without
//! provider credentials. Logs go to stderr, so stdout holds only these lines.

use std::io::Write;
use std::time::Duration;

use super::{Provider, request_body};
use crate::channels::pacing::ThroughputLimiter;
use crate::channels::provider::{FailureClass, ProviderError};
use crate::contract::Envelope;
use futures_util::future::BoxFuture;

/// Writes one line per delivered message to stdout.
#[derive(Debug, Clone, Default)]
pub struct ConsoleChannel;

impl ConsoleChannel {
    /// Prints the request body for `envelope`; returns the id the provider
    /// would answer with: `console.<id>` for WhatsApp, the envelope id for an
    /// SMS (Infobip takes Herald's id as its own, so delivery reports posted
    /// by hand to `/webhooks/infobip` match console deliveries too).
    pub fn print(&self, envelope: &Envelope) -> std::io::Result<String> {
        let mut line =
            serde_json::to_vec(&request_body(envelope)).expect("a JSON value always serialises");
        line.push(b'\n');
        // One write_all of a whole line under the stdout lock: concurrent
        // deliveries never interleave within a line.
        std::io::stdout().lock().write_all(&line)?;
        Ok(match envelope.channel {
            crate::contract::Channel::Sms => envelope.id.to_string(),
            crate::contract::Channel::Whatsapp => format!("console.{}", envelope.id),
        })
    }
}

impl Provider for ConsoleChannel {
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
