//! Lists an account's templates: `GET /{version}/{waba-id}/message_templates`
//! with the fields Herald checks, following `paging.next` until it is absent
//! (a page may be short, or empty, and still have a next one). A `next` that
//! leaves the Graph API's base URL is refused: the token goes with each page.

use std::time::Duration;

use serde_json::Value;

use super::client::{UNANSWERED, refused};
use super::error::WhatsAppError;
use crate::channels::http::{call, provider_http_client};
use crate::config::Secret;

/// The fields read (`GET /{waba-id}/message_templates?fields=…`), as the
/// contract lists them; a template's `id` is kept when Graph sends it.
pub const FIELDS: &str = "name,language,status,category,components,parameter_format";
/// Templates per page asked for.
const PAGE: usize = 100;
/// Most pages followed: 250 names in up to ~70 languages fit many times over.
const MAX_PAGES: usize = 200;

/// Lists the templates of accounts on one Graph API.
#[derive(Debug, Clone)]
pub struct TemplateLister {
    http: reqwest::Client,
    base_url: String,
    api_version: String,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The Graph API refused or did not answer.
    #[error(transparent)]
    Graph(#[from] Box<WhatsAppError>),
    /// A page was not `{"data": [...]}`.
    #[error("a page of templates was not {{\"data\": [...]}}")]
    Shape,
    /// `paging.next` pointed away from the Graph API.
    #[error("paging.next leaves the Graph API's base URL; not followed")]
    Foreign,
    /// More than [`MAX_PAGES`] pages.
    #[error("more than {MAX_PAGES} pages of templates")]
    TooManyPages,
}

impl TemplateLister {
    /// A lister for `base_url` (`https://graph.facebook.com`) and `api_version`.
    pub fn new(base_url: &str, api_version: &str, timeout: Duration) -> reqwest::Result<Self> {
        Ok(Self {
            http: provider_http_client(timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_version: api_version.to_owned(),
        })
    }

    /// Every template of `waba_id`, as Graph lists them.
    pub async fn list(&self, waba_id: &str, token: &Secret) -> Result<Vec<Value>, ListError> {
        let mut url = format!(
            "{}/{}/{waba_id}/message_templates?fields={FIELDS}&limit={PAGE}",
            self.base_url, self.api_version
        );
        let mut templates = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.page(&url, token).await?;
            let Some(Value::Array(data)) = page.get("data") else {
                return Err(ListError::Shape);
            };
            templates.extend(data.iter().cloned());
            match page.pointer("/paging/next").and_then(Value::as_str) {
                None => return Ok(templates),
                Some(next) if next.starts_with(&format!("{}/", self.base_url)) => {
                    url = without_token(next);
                }
                Some(_) => return Err(ListError::Foreign),
            }
        }
        Err(ListError::TooManyPages)
    }

    async fn page(&self, url: &str, token: &Secret) -> Result<Value, ListError> {
        let request = self.http.get(url).bearer_auth(token.expose());
        // reqwest's errors print their URL: a `next` is Graph's to write.
        let answer = call(request, &UNANSWERED)
            .await
            .map_err(|e| Box::new(without_url(e)))?;
        if answer.is_success() {
            return serde_json::from_slice(answer.body()).map_err(|_| ListError::Shape);
        }
        Err(ListError::Graph(Box::new(refused(&answer))))
    }
}

/// `next` without an `access_token` query parameter (Graph may echo the
/// token there; Herald sends it in the header).
fn without_token(next: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(next) else {
        return next.to_owned();
    };
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "access_token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    url.into()
}

fn without_url(e: WhatsAppError) -> WhatsAppError {
    match e {
        WhatsAppError::Connect(e) => WhatsAppError::Connect(e.without_url()),
        WhatsAppError::Interrupted(e) => WhatsAppError::Interrupted(e.without_url()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_next_link_loses_its_token() {
        let next = "https://graph.example/v25.0/1/message_templates?fields=name&access_token=EAAGsecret&after=c1";
        let kept = super::without_token(next);
        assert!(!kept.contains("EAAGsecret"), "{kept}");
        assert!(
            kept.contains("after=c1") && kept.contains("fields=name"),
            "{kept}"
        );
    }
}
