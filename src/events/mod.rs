//! Events out, as they leave: published to `EVENTS_TOPIC_ARN` with SNS
//! ([`sns`]), and the Standard Webhooks signature ([`signing`]) shared by the
//! embedded outbox's sender (`embedded::event_sender`) and the providers'
//! webhook checks. What an event says is built under `status::events`.

pub mod signing;
pub mod sns;
