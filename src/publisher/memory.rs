//! An in-memory publisher that records what it is given: the test double for
//! router tests, and a way to script publish failures.

use std::sync::Mutex;

use serde_json::json;

use super::{BoxFuture, HealthCheck, PublishError, PublishErrorKind, PublishReceipt, Publisher};
use crate::contract::Envelope;

/// Records every published envelope; can be told to fail.
#[derive(Debug, Default)]
pub struct RecordingPublisher {
    published: Mutex<Vec<Envelope>>,
    failure: Mutex<Option<PublishErrorKind>>,
    delay: Mutex<std::time::Duration>,
}

impl RecordingPublisher {
    /// An empty recorder that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later publish fail with `kind` (`None` restores success).
    /// With [`PublishErrorKind::OutcomeUnknown`] the envelope is recorded as
    /// published and the caller still gets the error: an answer that was lost.
    pub fn fail_with(&self, kind: Option<PublishErrorKind>) {
        *self
            .failure
            .lock()
            .expect("recorder lock is never poisoned: no code panics while holding it") = kind;
    }

    /// Makes every later publish take `delay` before it is recorded (a slow queue).
    pub fn delay_with(&self, delay: std::time::Duration) {
        *self.delay.lock().expect("recorder lock is never poisoned") = delay;
    }

    /// The envelopes published so far, in order.
    pub fn published(&self) -> Vec<Envelope> {
        self.published
            .lock()
            .expect("recorder lock is never poisoned")
            .clone()
    }
}

impl Publisher for RecordingPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        Box::pin(async move {
            let delay = *self.delay.lock().expect("recorder lock is never poisoned");
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(kind) = *self
                .failure
                .lock()
                .expect("recorder lock is never poisoned")
            {
                // "May have been published": it was, as after a lost answer.
                if kind.may_have_published() {
                    self.published
                        .lock()
                        .expect("recorder lock is never poisoned")
                        .push(envelope.clone());
                }
                return Err(PublishError::new(kind, "scripted failure"));
            }
            self.published
                .lock()
                .expect("recorder lock is never poisoned")
                .push(envelope.clone());
            Ok(PublishReceipt {
                queue_message_id: None,
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async move {
            let failing = self
                .failure
                .lock()
                .expect("recorder lock is never poisoned")
                .is_some();
            HealthCheck {
                name: "memory",
                healthy: !failing,
                detail: json!({ "failing": failing }),
            }
        })
    }
}
