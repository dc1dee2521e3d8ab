//! The edge's template check: a WhatsApp template send against the sending
//! number's account ([`crate::templates::service::Templates::check`]), read
//! from one snapshot of the cache per request or per batch.

use crate::domain::kind::MessageKind;
use crate::domain::message::OutboundMessage;
use crate::gateway::error::ApiError;
use crate::templates::service::{Refusal, Snapshot, Templates};
use crate::tenants::Tenants;

/// `Ok` when `message` is not a WhatsApp template, or fits its template.
/// `snapshot`: the batch's; a single send takes one only if it is a template.
pub fn check(
    templates: &Templates,
    snapshot: Option<&Snapshot>,
    tenants: &Tenants,
    message: &OutboundMessage,
) -> Result<(), ApiError> {
    if message.kind != MessageKind::Template || !templates.configured() {
        return Ok(());
    }
    let Some(template) = message.content.get("template") else {
        return Ok(());
    };
    let number = message
        .from
        .as_ref()
        .map(|s| s.value.as_str())
        .or(tenants.deployment_number());
    let taken;
    let snapshot = match snapshot {
        Some(s) => s,
        None => {
            taken = templates.snapshot();
            &taken
        }
    };
    templates
        .check(snapshot, number, template)
        .map_err(|refusal| match refusal {
            Refusal::NotFound { name, language } => ApiError::TemplateNotFound { name, language },
            Refusal::NotApproved {
                name,
                language,
                status,
            } => ApiError::TemplateNotApproved {
                name,
                language,
                status,
            },
            Refusal::Parameters(errors) => ApiError::InvalidFields(errors),
        })
}
