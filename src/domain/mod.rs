//! What Herald sends: recipients and messages, validated before anything else sees them.

pub mod batch;
pub mod message;
pub mod phone_number;
pub mod validation;

pub use message::{MessageKind, OutboundMessage, ValidationError};
pub use phone_number::PhoneNumber;
pub use validation::FieldError;
