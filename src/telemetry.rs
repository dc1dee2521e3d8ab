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
pub fn init(config: &LogConfig, under_lambda: bool) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(&config.filter).map_err(TelemetryError::InvalidFilter)?;
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
    result.map_err(TelemetryError::AlreadyInstalled)
}

/// Why the log subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` (or `LOG_LEVEL`) is not a valid `EnvFilter` directive list.
    #[error("LOG_LEVEL/RUST_LOG is invalid")]
    InvalidFilter(#[source] tracing_subscriber::filter::ParseError),
    /// Another global subscriber is already installed.
    #[error("a log subscriber is already installed")]
    AlreadyInstalled(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An error and its causes on one line, `error: cause: cause…`, for a log
/// line or a message to an operator. Each error's `Display` says only its
/// own part; [`std::error::Error::source`] links the rest.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    match causes(error) {
        Some(causes) => format!("{error}: {causes}"),
        None => error.to_string(),
    }
}

/// The causes of `error` (not `error` itself) on one line, `cause: cause…`;
/// `None` when it has none. A cause whose text the line already ends with
/// (an error that prints its source itself) is not repeated.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = error.source()?;
    let mut line = cause.to_string();
    while let Some(next) = cause.source() {
        let text = next.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next;
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Link {
        text: &'static str,
        #[source]
        source: Option<Box<Link>>,
    }

    fn link(text: &'static str, source: Option<Link>) -> Link {
        Link {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn a_chain_is_each_error_in_turn() {
        let error = link("outer", Some(link("middle", Some(link("inner", None)))));
        assert_eq!(chain(&error), "outer: middle: inner");
        assert_eq!(causes(&error).as_deref(), Some("middle: inner"));
        assert_eq!(chain(&link("alone", None)), "alone");
        assert_eq!(causes(&link("alone", None)), None);
    }

    #[test]
    fn a_cause_an_error_already_printed_is_not_repeated() {
        // As errors whose text includes their source's.
        let error = link(
            "outer",
            Some(link(
                "storage error: disk full",
                Some(link("disk full", None)),
            )),
        );
        assert_eq!(chain(&error), "outer: storage error: disk full");
    }
}
