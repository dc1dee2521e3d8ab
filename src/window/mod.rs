//! The customer-service window: WhatsApp lets a business send anything but a
//! template only within 24 hours of the person's last message to that
//! business number; outside it Meta accepts the request and fails it later
//! with 131047, so the message is lost while the application believes it
//! sent. Herald records the person's last inbound time per (sending number,
//! person), by the person's message time as Meta reports it, and learns
//! "closed" from 131047; the gateway refuses a free-form send it knows to be
//! outside the window, and the consumer checks again before sending.
//!
//! Free-form is every WhatsApp message type except `template` (text, media,
//! location, contacts, interactive, reactions alike: Meta's rule). A person
//! Herald has never heard from is unknown, and the send goes.

use serde_json::{Value, json};

pub mod store;

/// How long a person's message keeps the window open.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// Meta's "re-engagement message": the window is closed.
pub const CLOSED_CODE: i64 = 131_047;
/// The problem code of a send refused for the window.
pub const OUTSIDE_CODE: &str = "outside-customer-service-window";

/// What Herald knows of one person's window with one sending number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// The person's latest message time, Unix ms.
    pub last_inbound_ms: Option<i64>,
    /// When a 131047 said the window was closed, Unix ms.
    pub closed_ms: Option<i64>,
}

/// Whether a free-form message may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Never heard from, never refused: the send goes.
    Unknown,
    /// Within 24 h of the person's last message.
    Open,
    /// Past 24 h, or a 131047 came after the person's last message.
    Closed,
}

impl Window {
    /// The window at `now_ms`.
    pub fn state(&self, now_ms: i64) -> WindowState {
        let closed_since_inbound = match (self.closed_ms, self.last_inbound_ms) {
            // Meta's times are whole seconds: a 131047 in the same second
            // as the person's message is older than it (a message from
            // them always opens the window).
            (Some(closed), Some(inbound)) => closed > inbound,
            (Some(_), None) => true,
            (None, _) => false,
        };
        match self.last_inbound_ms {
            _ if closed_since_inbound => WindowState::Closed,
            Some(inbound) if now_ms < inbound + WINDOW_MS => WindowState::Open,
            Some(_) => WindowState::Closed,
            None => WindowState::Unknown,
        }
    }

    /// `lastInboundAt`, `windowOpen`, `windowExpiresAt` as the contacts API
    /// shows them (RFC 3339; `null` when never heard from).
    pub fn view(&self, now_ms: i64) -> Value {
        let at = |ms: Option<i64>| ms.map(crate::clock::format_ms);
        let open = match self.state(now_ms) {
            WindowState::Open => Some(true),
            WindowState::Closed => Some(false),
            WindowState::Unknown => None,
        };
        json!({
            "lastInboundAt": at(self.last_inbound_ms),
            "windowOpen": open,
            "windowExpiresAt": at(self.last_inbound_ms.map(|t| t + WINDOW_MS)),
        })
    }
}

/// True when a WhatsApp message of `message_type` needs the window.
pub fn is_free_form(message_type: &str) -> bool {
    message_type != "template"
}

/// Who received an inbound WhatsApp message: the business number it was
/// sent to, and the tenants it belongs to (read receipts go from that number,
/// for those tenants only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// The business number's `phone_number_id`.
    pub number_id: String,
    /// The tenants it belongs to.
    pub tenants: Vec<String>,
}

/// A 131047 to close a window with: the sending number, the person, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// The business number's `phone_number_id`.
    pub number_id: String,
    /// The person, E.164.
    pub person: String,
    /// When Meta said so, Unix ms.
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn the_window_is_open_for_24_hours_after_the_persons_message() {
        let w = |inbound: Option<i64>, closed: Option<i64>| Window {
            last_inbound_ms: inbound,
            closed_ms: closed,
        };
        assert_eq!(w(None, None).state(NOW), WindowState::Unknown);
        assert_eq!(w(Some(NOW - 1000), None).state(NOW), WindowState::Open);
        assert_eq!(
            w(Some(NOW - WINDOW_MS), None).state(NOW),
            WindowState::Closed
        );
        // A 131047 closes it until the person writes again.
        assert_eq!(w(None, Some(NOW - 5)).state(NOW), WindowState::Closed);
        assert_eq!(
            w(Some(NOW - 9), Some(NOW - 5)).state(NOW),
            WindowState::Closed
        );
        assert_eq!(
            w(Some(NOW - 1), Some(NOW - 5)).state(NOW),
            WindowState::Open
        );
        assert_eq!(
            w(Some(NOW - 5), Some(NOW - 5)).state(NOW),
            WindowState::Open,
            "the same second: the person's message wins"
        );
        let view = w(Some(NOW - 1000), None).view(NOW);
        assert_eq!(view["windowOpen"], true);
        assert_eq!(w(None, None).view(NOW)["lastInboundAt"], Value::Null);
        assert!(is_free_form("text") && is_free_form("reaction") && !is_free_form("template"));
    }
}
