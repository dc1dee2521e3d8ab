//! The inbound-webhook contract: what a provider POSTs back (status reports,
//! inbound messages), as every provider's webhook implements it. The gateway
//! mounts one route per [`InboundWebhook`] in the registry
//! (`Channels::inbound_webhooks`) and runs the same steps for each: the
//! credentials in the headers before a byte of the body is read, the body
//! within its budget, the credentials over the body, the reading, the record.

use std::collections::HashMap;

use http::HeaderMap;

use super::WebhookContent;
use super::unreadable::UnreadableWebhook;

/// Where a webhook listens and how the API document describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookRoute {
    /// The path (`/webhooks/whatsapp`).
    pub path: &'static str,
    /// Its name in logs and in `herald_webhook_items_total{webhook}`.
    pub source: &'static str,
    /// The POST operation's id in the API document.
    pub operation_id: &'static str,
    /// What it carries, for the API document.
    pub description: &'static str,
    /// The header that carries its signature, for the API document.
    pub signature_header: &'static str,
    /// How that header is computed, for the API document.
    pub signature_description: &'static str,
    /// True when the signature header is the only way to authenticate.
    pub signature_required: bool,
    /// Its GET subscription handshake, for a webhook that has one
    /// ([`InboundWebhook::handshake`]).
    pub handshake: Option<HandshakeDoc>,
}

/// How the API document describes a GET subscription handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeDoc {
    /// The GET operation's id.
    pub operation_id: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The query parameters it reads.
    pub query: &'static [&'static str],
    /// What a `404` means for it.
    pub not_configured: &'static str,
}

/// Why a webhook request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its credentials are not configured here: the route does not exist (`404`).
    NotConfigured,
    /// It carries no credentials; names what was expected (`401`).
    Missing(String),
    /// Its credentials are wrong (`403`).
    Invalid,
}

/// What the headers proved, to be completed over the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof<'a> {
    /// A signature to check over the body.
    Signature(&'a str),
    /// Already proven by the headers (HTTP Basic).
    Proven,
}

/// One provider webhook.
pub trait InboundWebhook: Send + Sync + std::fmt::Debug + 'static {
    /// Where it listens and how it is documented.
    fn route(&self) -> &'static WebhookRoute;

    /// Checks the credentials the headers carry, before the body is read.
    fn check_headers<'a>(&self, headers: &'a HeaderMap) -> Result<Proof<'a>, Refusal>;

    /// Completes [`InboundWebhook::check_headers`] once the body is read.
    fn check_body(&self, proof: &Proof<'_>, body: &[u8]) -> Result<(), Refusal>;

    /// Reads the body into what it carries.
    fn read(&self, body: &[u8]) -> Result<WebhookContent, UnreadableWebhook>;

    /// The answer to a GET subscription handshake (Meta's `hub.challenge`),
    /// for a webhook that has one: the text to answer with, or why not.
    fn handshake(&self, _query: &HashMap<String, String>) -> Result<String, Refusal> {
        Err(Refusal::NotConfigured)
    }

    /// True when its credentials are configured (the route answers).
    fn is_configured(&self) -> bool;
}

/// The signature header `headers` carries as `name`, as text: missing →
/// [`Refusal::Missing`] naming `shown` (the header as the documentation
/// spells it), not text → [`Refusal::Invalid`].
pub fn signature_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
    shown: &str,
) -> Result<&'a str, Refusal> {
    headers
        .get(name)
        .ok_or_else(|| Refusal::Missing(shown.to_owned()))?
        .to_str()
        .map_err(|_| Refusal::Invalid)
}
