//! Opt-outs: a recipient who said STOP is never sent to again on that
//! channel. An opt-out is a tenant, a number and a set of channels
//! (`sms`, `whatsapp`, or `all`): consent belongs to the tenant whose number
//! the person wrote to (the one tenant `default` without `TENANTS_FILE`),
//! not to one API key. It is recorded from inbound keywords and from the API, checked
//! by the gateway at the edge and by the consumer before every delivery, and
//! every change is a `recipient.opt-out` event.
//!
//! The store is the status store's (`StatusStore`): the
//! embedded database or the DynamoDB table.
//!
//! Changes follow the person's order, not the webhooks' ([`apply_in_order`]):
//! each number keeps, beside its channels, per channel the time of the latest
//! STOP, START and API change applied, and the provider ids of its latest
//! inbound keywords ([`Ordering`]). Consent errs on the side of the STOP:
//! - an inbound message already applied (a provider's retry, a signed
//!   webhook replayed months later) changes nothing;
//! - a START changes nothing unless it is newer than the latest STOP (a tie
//!   goes to the STOP) and not older than the latest API change;
//! - a STOP changes nothing only when a newer START was applied; an API
//!   change (on Herald's clock, which may not agree with the provider's)
//!   never holds a STOP back;
//! - the API's own changes always apply.
//!
//! Both stores keep a number's record after its last channel is removed, so
//! its order is not forgotten.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::contract::Channel;

pub mod store;

/// The channel names an opt-out can hold: every channel, and `all`.
pub fn channel_names() -> impl Iterator<Item = &'static str> {
    Channel::ALL.into_iter().map(Channel::as_str).chain(["all"])
}

/// Keywords that take an opt-out back.
const OPT_IN_KEYWORDS: [&str; 2] = ["START", "UNSTOP"];

/// A recipient's opt-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptOut {
    /// The tenant it belongs to.
    pub tenant: String,
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
    /// The tenant whose consent changes.
    pub tenant: String,
    /// The number, E.164.
    pub number: String,
    /// The change.
    pub change: Change,
    /// `api`, `inbound-sms`, `inbound-whatsapp`.
    pub source: String,
    /// When the change was made, Unix ms: the person's message time as the
    /// provider reports it, or Herald's clock for the API.
    pub at_ms: i64,
    /// The provider's id of the inbound message that made it, if one did.
    pub inbound_id: Option<String>,
}

impl OptOutUpdate {
    /// The key of the consent it changes ([`consent_key`]).
    pub fn key(&self) -> String {
        consent_key(&self.tenant, &self.number)
    }
}

/// One key for a tenant's consent of a number: the number alone for the
/// tenant `default` (so stores written before tenants keep their keys),
/// else `<tenant>#<number>` (tenant ids have no `#` or `+`).
pub fn consent_key(tenant: &str, number: &str) -> String {
    if tenant == crate::contract::DEFAULT_TENANT {
        number.to_owned()
    } else {
        format!("{tenant}#{number}")
    }
}

/// How many inbound ids a number's record remembers (replays of older ones
/// are refused by their time).
const RECENT_INBOUND: usize = 16;

/// What a number's record keeps so that changes apply in the person's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ordering {
    /// Per channel (`sms`, `whatsapp`, `all`), the person's time of the
    /// latest STOP applied, Unix ms.
    #[serde(default)]
    pub stop_at: BTreeMap<String, i64>,
    /// Per channel, the person's time of the latest START applied.
    #[serde(default)]
    pub start_at: BTreeMap<String, i64>,
    /// Per channel, Herald's time of the latest API change.
    #[serde(default)]
    pub api_at: BTreeMap<String, i64>,
    /// Provider ids of the latest inbound messages applied, newest last.
    #[serde(default)]
    pub recent: VecDeque<String>,
}

impl Ordering {
    /// Reads a stored ordering; an absent or unreadable one is empty (a
    /// record written before ordering was kept).
    pub fn parse(stored: Option<&str>) -> Self {
        stored
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an ordering serialises")
    }

    /// The latest time in `times` for `channel` or `all`.
    fn latest(times: &BTreeMap<String, i64>, channel: &str) -> Option<i64> {
        [channel, "all"]
            .iter()
            .filter_map(|c| times.get(*c))
            .max()
            .copied()
    }

    /// True when `update` must change nothing (see the module documentation).
    fn refuses(&self, update: &OptOutUpdate) -> bool {
        if update
            .inbound_id
            .as_ref()
            .is_some_and(|id| self.recent.contains(id))
        {
            return true;
        }
        let at = update.at_ms;
        match (&update.change, update.inbound_id.is_some()) {
            (Change::Add(c), true) => Self::latest(&self.start_at, c).is_some_and(|t| t > at),
            (Change::Remove(c), true) => {
                Self::latest(&self.stop_at, c).is_some_and(|t| t >= at)
                    || Self::latest(&self.api_at, c).is_some_and(|t| t > at)
            }
            _ => false,
        }
    }

    /// Notes `update` as applied.
    fn note(&mut self, update: &OptOutUpdate) {
        let (times, channels): (&mut BTreeMap<String, i64>, Vec<&str>) =
            match (&update.change, update.inbound_id.is_some()) {
                (Change::Add(c), true) => (&mut self.stop_at, vec![c.as_str()]),
                (Change::Remove(c), true) => (&mut self.start_at, vec![c.as_str()]),
                (Change::Add(c) | Change::Remove(c), false) => (&mut self.api_at, vec![c.as_str()]),
                (Change::Set(_) | Change::Clear, _) => {
                    (&mut self.api_at, channel_names().collect())
                }
            };
        for c in channels {
            let at = times.entry(c.to_owned()).or_insert(update.at_ms);
            *at = (*at).max(update.at_ms);
        }
        if let Some(id) = &update.inbound_id {
            self.recent.push_back(id.clone());
            while self.recent.len() > RECENT_INBOUND {
                self.recent.pop_front();
            }
        }
    }
}

/// What applying an update to a number's record gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The channels after the update.
    pub channels: BTreeSet<String>,
    /// The ordering to store with them.
    pub ordering: Ordering,
    /// True when the channels changed (an event and a metric follow).
    pub changed: bool,
}

/// Applies `update` to a record with `channels` and `ordering` in the
/// person's order (see the module documentation): `None` when it must change
/// nothing (then nothing is written).
pub fn apply_in_order(
    channels: &BTreeSet<String>,
    ordering: &Ordering,
    update: &OptOutUpdate,
) -> Option<Applied> {
    if ordering.refuses(update) {
        return None;
    }
    let next = apply(channels, &update.change);
    let mut ordering = ordering.clone();
    ordering.note(update);
    Some(Applied {
        changed: next != *channels,
        channels: next,
        ordering,
    })
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
                    channel_names()
                        .filter(|c| *c != "all" && c != channel)
                        .map(str::to_owned),
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
        // "all" less one channel is every other channel, however many there are.
        let others: Vec<&str> = Channel::ALL
            .iter()
            .map(|c| c.as_str())
            .filter(|c| *c != "sms")
            .collect();
        assert_eq!(
            apply(&set(&["all"]), &Change::Remove("sms".into())),
            set(&others)
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
            tenant: "default".into(),
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

    fn inbound(change: Change, at_ms: i64, id: &str) -> OptOutUpdate {
        OptOutUpdate {
            tenant: "default".into(),
            number: "+14155550123".into(),
            change,
            source: "inbound-sms".into(),
            at_ms,
            inbound_id: Some(id.into()),
        }
    }

    fn api(change: Change, at_ms: i64) -> OptOutUpdate {
        OptOutUpdate {
            source: "api".into(),
            inbound_id: None,
            ..inbound(change, at_ms, "")
        }
    }

    /// Applies updates in arrival order, as a store does.
    fn replay(updates: &[OptOutUpdate]) -> BTreeSet<String> {
        let (mut channels, mut ordering) = (BTreeSet::new(), Ordering::default());
        for u in updates {
            if let Some(a) = apply_in_order(&channels, &ordering, u) {
                (channels, ordering) = (a.channels, a.ordering);
            }
        }
        channels
    }

    #[test]
    fn changes_follow_the_person_s_order_not_the_arrival_order() {
        let stop = inbound(Change::Add("sms".into()), 200_000, "stop");
        let start = inbound(Change::Remove("sms".into()), 100_000, "start");
        assert_eq!(replay(&[start.clone(), stop.clone()]), set(&["sms"]));
        assert_eq!(
            replay(&[stop.clone(), start]),
            set(&["sms"]),
            "an older START retried after a newer STOP changes nothing"
        );
        let later_start = inbound(Change::Remove("sms".into()), 300_000, "start-2");
        assert_eq!(
            replay(&[stop.clone(), later_start.clone(), stop.clone()]),
            set(&[]),
            "a replayed STOP changes nothing"
        );
        let mut old_stop = stop.clone();
        old_stop.inbound_id = Some("stop-forgotten".into());
        assert_eq!(
            replay(&[stop, later_start, old_stop]),
            set(&[]),
            "a STOP older than an applied START changes nothing, even unrecognised"
        );
    }

    /// Within one second, or on a tie, the STOP wins (milliseconds decide when
    /// the provider gives them: Infobip does).
    #[test]
    fn a_tie_goes_to_the_stop() {
        let start = inbound(Change::Remove("sms".into()), 10_100, "start");
        let stop = inbound(Change::Add("sms".into()), 10_900, "stop");
        assert_eq!(replay(&[stop.clone(), start.clone()]), set(&["sms"]));
        assert_eq!(replay(&[start, stop]), set(&["sms"]));
        let same = inbound(Change::Remove("sms".into()), 10_900, "start-same");
        let stop = inbound(Change::Add("sms".into()), 10_900, "stop-same");
        assert_eq!(replay(&[stop.clone(), same.clone()]), set(&["sms"]));
        assert_eq!(replay(&[same, stop]), set(&["sms"]));
    }

    /// An API change never holds back a STOP the person sent before it (its
    /// webhook retried late, or the clocks disagree), but a START older than
    /// an operator's opt-out changes nothing.
    #[test]
    fn the_api_never_holds_back_a_stop() {
        let stop = inbound(Change::Add("sms".into()), 100_000, "stop");
        let delete = api(Change::Clear, 200_000);
        assert_eq!(replay(&[delete.clone(), stop.clone()]), set(&["sms"]));
        let put = api(Change::Set(set(&["whatsapp"])), 200_000);
        assert_eq!(replay(&[put, stop.clone()]), set(&["sms", "whatsapp"]));
        let replayed = [stop.clone(), delete, stop];
        assert_eq!(replay(&replayed), set(&[]), "but a replay is still refused");
        let put_all = api(Change::Set(set(&["all"])), 200_000);
        let old_start = inbound(Change::Remove("sms".into()), 150_000, "start");
        assert_eq!(replay(&[put_all, old_start]), set(&["all"]));
    }
}
