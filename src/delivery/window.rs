//! The pipeline's side of the customer-service window ([`crate::window`]):
//! a free-form WhatsApp message is not sent to a person whose window Herald
//! knows to be closed (it fails with `outside-customer-service-window`, as a
//! failure that means "cannot reach here", so an SMS fallback goes instead),
//! and Meta's 131047 answer closes the window for the next messages.

use super::{Decision, Pipeline};
use crate::contract::{Channel, Envelope};
use crate::status::{ErrorCode, FailureMark, Status, StatusError, now_ms};
use crate::window::{self, Closure, WindowState};

impl Pipeline {
    /// The business number and person of a free-form WhatsApp envelope, when
    /// the window applies to it.
    fn window_key(&self, envelope: &Envelope) -> Option<(String, String)> {
        if !self.window_checks
            || envelope.channel != Channel::Whatsapp
            || !window::is_free_form(envelope.message_type())
        {
            return None;
        }
        let number = self.channels.for_envelope(envelope)?.account().to_owned();
        Some((number, envelope.to.as_str().to_owned()))
    }

    /// The decision for a free-form message outside a window known closed
    /// (recorded `failed`, code `outside-customer-service-window`), or `None`
    /// to send it. A window that cannot be read does not hold the message
    /// back: Meta's own answer is the check then.
    pub(super) async fn outside_window(
        &self,
        envelope: &Envelope,
        attempt: u32,
    ) -> Option<Decision> {
        let store = self.statuses.as_ref()?;
        let (number, person) = self.window_key(envelope)?;
        match store.window(&number, &person).await {
            Ok(w) if w.state(now_ms()) == WindowState::Closed => {
                let reason = "outside the 24-hour customer-service window: not sent".to_owned();
                let error = StatusError {
                    code: Some(ErrorCode::Name(window::OUTSIDE_CODE.into())),
                    title: reason.clone(),
                    channel: Channel::Whatsapp.as_str().to_owned(),
                    class: Some(FailureMark::Unreachable),
                };
                self.write_status(envelope, attempt, Status::Failed, None, Some(error))
                    .await;
                Some(Decision::GiveUp { code: None, reason })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot read the customer-service window: the message goes");
                None
            }
        }
    }

    /// After Meta answered 131047: the person's window is closed.
    pub(super) async fn learn_window(&self, envelope: &Envelope, decision: &Decision) {
        let closed =
            matches!(decision, Decision::GiveUp { code: Some(c), .. } if *c == window::CLOSED_CODE);
        let (Some(store), true) = (&self.statuses, closed) else {
            return;
        };
        let Some((number_id, person)) = self.window_key(envelope) else {
            return;
        };
        let closure = Closure {
            number_id,
            person,
            at_ms: now_ms(),
        };
        if let Err(e) = store.close_windows(vec![closure]).await {
            tracing::warn!(error.message = %e, "cannot note a closed customer-service window");
        }
    }
}
