//! The gateway's route handlers, one file per resource.

pub mod health;
pub mod messages;
