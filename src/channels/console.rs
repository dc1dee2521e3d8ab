//! The console channel: prints the exact request body that would be posted to the
//! WhatsApp Cloud API, one JSON line per message on stdout, for development
//! without WhatsApp credentials. Logs go to stderr, so stdout holds only these lines.

use std::io::Write;

use crate::channels::whatsapp::request_body;
use crate::contract::Envelope;

/// Writes one line per delivered message to stdout.
#[derive(Debug, Clone, Default)]
pub struct ConsoleChannel;

impl ConsoleChannel {
    /// Prints the request body for `envelope`; returns a synthetic message id.
    pub fn send(&self, envelope: &Envelope) -> std::io::Result<String> {
        let mut line =
            serde_json::to_vec(&request_body(envelope)).expect("a JSON value always serialises");
        line.push(b'\n');
        // One write_all of a whole line under the stdout lock: concurrent
        // deliveries never interleave within a line.
        std::io::stdout().lock().write_all(&line)?;
        Ok(format!("console.{}", envelope.id))
    }
}
