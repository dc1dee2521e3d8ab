//! The gateway's route handlers, one file per resource.

pub mod batch;
pub mod cancel;
pub mod contacts;
pub mod dead_letters;
pub mod health;
pub mod inbound;
pub mod media;
pub mod messages;
pub mod metrics;
pub mod opt_outs;
pub mod search;
pub mod status;
pub mod templates;
pub mod webhooks;
