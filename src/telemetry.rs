//! Logging: one function that builds and installs the `tracing` subscriber.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber: JSON lines (the default), pretty output, or
/// plain text lines, filtered by `RUST_LOG`/`LOG_LEVEL`. Under Lambda the
/// function's `AWS_LAMBDA_LOG_FORMAT` and `AWS_LAMBDA_LOG_LEVEL` choose (see
/// the configuration), and timestamps are left out because CloudWatch stamps
/// every line itself.
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
        (LogFormat::Text, false) => builder.with_ansi(false).try_init(),
        (LogFormat::Text, true) => builder.with_ansi(false).without_time().try_init(),
    };
    result.map_err(|e| e.to_string())
}
