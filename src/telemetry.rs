//! Logging: one function that builds and installs the `tracing` subscriber.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber: JSON lines (the default) or pretty output,
/// filtered by `RUST_LOG`/`LOG_LEVEL`. Under Lambda, timestamps are left out
/// because CloudWatch stamps every line itself.
///
/// Returns an error if a subscriber is already installed (tests call it repeatedly).
pub fn init(config: &LogConfig, under_lambda: bool) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|e| format!("LOG_LEVEL/RUST_LOG is invalid: {e}"))?;
    // Logs go to stderr so that stdout carries only data: the console channel's lines.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match (config.format, under_lambda) {
        (LogFormat::Json, false) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init(),
        (LogFormat::Pretty, _) => builder.pretty().try_init(),
    };
    result.map_err(|e| e.to_string())
}
