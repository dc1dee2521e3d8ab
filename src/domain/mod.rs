//! What Herald sends: recipients and messages, validated before anything else sees them.

pub mod batch;
pub mod expiry;
pub mod kind;
pub mod message;
pub mod phone_number;
pub mod schedule;
pub mod sms;
pub mod validation;
pub mod whatsapp;
pub mod zones;

pub use message::{Fallback, MessageKind, OutboundMessage, SendRules, Sender, ValidationError};
pub use phone_number::PhoneNumber;
pub use sms::SmsInfo;
pub use validation::FieldError;
