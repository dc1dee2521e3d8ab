//! The one error of the stores (statuses and opt-outs): a leaf both seams use.

/// Why a status could not be read or written: what was being done, and the
/// error that stopped it (the database's, the SDK's, a publish's) as its
/// source. Log it with [`crate::telemetry::chain`] to see the causes.
#[derive(Debug, thiserror::Error)]
#[error("status store: {context}")]
pub struct StoreError {
    /// What failed, for operators (never secrets).
    context: String,
    /// The underlying error, when there is one.
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failure with no underlying error (a lost race, a conflict).
    pub fn new(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// A failure caused by `source`.
    pub fn caused_by(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// What failed, without the causes.
    pub fn context(&self) -> &str {
        &self.context
    }
}
