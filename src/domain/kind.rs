//! What kind of WhatsApp message a send is, and the text limits WhatsApp
//! sets: the leaf the request rules (`message`) and the WhatsApp content
//! rules (`whatsapp`) both build on.

/// Longest text body WhatsApp accepts.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest media caption WhatsApp accepts.
pub const MAX_CAPTION_CHARS: usize = 1024;

/// The WhatsApp message types Herald sends; the `type` SNS message attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Template,
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Interactive,
    Location,
    Contacts,
    Reaction,
}

impl MessageKind {
    /// WhatsApp's name for the type, used as the message's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Template => "template",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Interactive => "interactive",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Reaction => "reaction",
        }
    }

    /// The kind a send request's content field makes.
    pub(crate) fn from_field(field: &str) -> Self {
        match field {
            "template" => Self::Template,
            "image" => Self::Image,
            "video" => Self::Video,
            "audio" => Self::Audio,
            "document" => Self::Document,
            "sticker" => Self::Sticker,
            "interactive" => Self::Interactive,
            "location" => Self::Location,
            "contacts" => Self::Contacts,
            "reaction" => Self::Reaction,
            _ => Self::Text,
        }
    }
}
