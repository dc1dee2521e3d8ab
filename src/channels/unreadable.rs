//! Why a provider's webhook body cannot be read at all, for both providers'
//! readers (WhatsApp's and Infobip's): the gateway answers it with a `400`
//! whose detail is this error's text.

/// A webhook body that is not what any provider sends: not JSON, or not the
/// shape every payload shares. (What is inside is read leniently: an entry
/// Herald cannot use is skipped and counted, never a reason to refuse.)
#[derive(Debug, thiserror::Error)]
pub enum UnreadableWebhook {
    /// The body is not JSON. Its text is the parser's, which names the line
    /// and column.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object.
    #[error("the body is not a JSON object")]
    NotAnObject,
    /// A field that holds the payload's list holds something else.
    #[error("`{0}` is not an array")]
    NotAnArray(&'static str),
}
