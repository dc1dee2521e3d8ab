//! Opt-outs (DESIGN.md, "Opt-outs"): a recipient who said STOP is never sent
//! to again on that channel. An opt-out is a number and a set of channels
//! (`sms`, `whatsapp`, or `all`); it belongs to the deployment, not to one
//! API key. It is recorded from inbound keywords and from the API, checked
//! by the gateway at the edge and by the consumer before every delivery, and
//! every change is a `recipient.opt-out` event.
//!
//! The store is the status store's ([`crate::status::StatusStore`]): the
//! embedded database or the DynamoDB table.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::contract::Channel;

/// The channel names an opt-out can hold.
pub const CHANNELS: [&str; 3] = ["sms", "whatsapp", "all"];

/// Keywords that take an opt-out back.
const OPT_IN_KEYWORDS: [&str; 2] = ["START", "UNSTOP"];

/// A recipient's opt-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptOut {
    /// The number, E.164.
    pub number: String,
    /// The channels opted out of (`all` covers every channel).
    pub channels: BTreeSet<String>,
    /// What made the last change: `api`, `inbound-sms`, `inbound-whatsapp`.
    pub source: String,
    /// When it last changed, RFC 3339.
    pub updated_at: String,
}

impl OptOut {
    /// True when messages on `channel` must not be sent to this number.
    pub fn blocks(&self, channel: Channel) -> bool {
        self.channels.contains("all") || self.channels.contains(channel.as_str())
    }
}

/// One change to a number's opt-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Replace the channels (the API's `PUT`).
    Set(BTreeSet<String>),
    /// Add one channel (an inbound STOP).
    Add(String),
    /// Remove one channel (an inbound START), keeping the others: `all`
    /// becomes every other channel.
    Remove(String),
    /// Remove every channel (the API's `DELETE`).
    Clear,
}

/// A change to apply, with the number and what made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutUpdate {
    /// The number, E.164.
    pub number: String,
    /// The change.
    pub change: Change,
    /// `api`, `inbound-sms`, `inbound-whatsapp`.
    pub source: String,
}

/// The channels after `change`.
pub fn apply(current: &BTreeSet<String>, change: &Change) -> BTreeSet<String> {
    match change {
        Change::Set(channels) => channels.clone(),
        Change::Clear => BTreeSet::new(),
        Change::Add(channel) => {
            let mut next = current.clone();
            if !next.contains("all") {
                next.insert(channel.clone());
            }
            next
        }
        Change::Remove(channel) => {
            let mut next = current.clone();
            if next.remove("all") {
                next.extend(
                    CHANNELS
                        .iter()
                        .filter(|c| **c != "all" && *c != channel)
                        .map(|c| (*c).to_owned()),
                );
            }
            next.remove(channel);
            next
        }
    }
}

/// The opt-out change an inbound text makes on `channel`, if it is a
/// keyword: the whole text, trimmed and case-folded, equal to one of
/// `keywords` (opt out) or `START`/`UNSTOP` (opt back in).
pub fn keyword_change(text: &str, channel: &str, keywords: &[String]) -> Option<Change> {
    let word = text.trim().to_uppercase();
    if keywords.contains(&word) {
        Some(Change::Add(channel.to_owned()))
    } else if OPT_IN_KEYWORDS.contains(&word.as_str()) {
        Some(Change::Remove(channel.to_owned()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn keywords_are_whole_trimmed_case_folded_texts() {
        let keywords: Vec<String> = ["STOP", "UNSUBSCRIBE"].map(String::from).to_vec();
        assert_eq!(
            keyword_change("  stop\n", "sms", &keywords),
            Some(Change::Add("sms".into()))
        );
        assert_eq!(
            keyword_change("Unsubscribe", "whatsapp", &keywords),
            Some(Change::Add("whatsapp".into()))
        );
        assert_eq!(
            keyword_change("start", "sms", &keywords),
            Some(Change::Remove("sms".into()))
        );
        assert_eq!(keyword_change("please stop", "sms", &keywords), None);
        assert_eq!(keyword_change("stopp", "sms", &keywords), None);
    }

    #[test]
    fn changes_compose() {
        assert_eq!(apply(&set(&[]), &Change::Add("sms".into())), set(&["sms"]));
        assert_eq!(
            apply(&set(&["sms"]), &Change::Add("whatsapp".into())),
            set(&["sms", "whatsapp"])
        );
        assert_eq!(
            apply(&set(&["all"]), &Change::Add("sms".into())),
            set(&["all"])
        );
        assert_eq!(
            apply(&set(&["all"]), &Change::Remove("sms".into())),
            set(&["whatsapp"])
        );
        assert_eq!(
            apply(&set(&["sms"]), &Change::Remove("sms".into())),
            set(&[])
        );
        assert_eq!(
            apply(&set(&["sms"]), &Change::Set(set(&["whatsapp"]))),
            set(&["whatsapp"])
        );
        assert_eq!(apply(&set(&["sms"]), &Change::Clear), set(&[]));
        let o = OptOut {
            number: "+1".into(),
            channels: set(&["all"]),
            source: "api".into(),
            updated_at: String::new(),
        };
        assert!(o.blocks(Channel::Sms) && o.blocks(Channel::Whatsapp));
        let o = OptOut {
            channels: set(&["sms"]),
            ..o
        };
        assert!(o.blocks(Channel::Sms) && !o.blocks(Channel::Whatsapp));
    }
}
