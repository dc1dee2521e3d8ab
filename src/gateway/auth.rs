//! API-key authentication, as middleware that runs before the body is read.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::ApiKey;
use crate::tenants::{Scope, Tenants};

/// The authenticated caller, put in the request's extensions by [`require_api_key`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// The id of the key the caller presented (never the key).
    pub key_id: Arc<str>,
    /// The tenant the key acts for (`default` without `TENANTS_FILE`).
    pub tenant: Arc<str>,
    /// What the key may read and change.
    pub scope: Arc<Scope>,
}

impl Caller {
    /// True for a key of `ADMIN_KEY_IDS`.
    pub fn is_admin(&self) -> bool {
        *self.scope == Scope::Admin
    }
}

/// The configured keys, kept only as SHA-256 digests. Comparing digests of equal
/// length in constant time reveals neither the keys nor their lengths.
#[derive(Debug)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Caller)>,
}

impl ApiKeys {
    /// Digests the configured keys; each key acts for its tenant, within its
    /// scope (every tenant for `admins`).
    pub fn new(keys: &[ApiKey], tenants: &Tenants, admins: &[String]) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| {
                    let tenant = tenants.of_key(&k.id);
                    let scope = tenants.scope(&k.id, &tenant, admins.contains(&k.id));
                    let caller = Caller {
                        key_id: Arc::from(k.id.as_str()),
                        tenant,
                        scope: Arc::new(scope),
                    };
                    (digest(k.key.expose()), caller)
                })
                .collect(),
        }
    }

    /// The caller whose key equals `presented`, if any. Every configured key
    /// is compared, so the time taken does not say which one matched.
    pub fn identify(&self, presented: &str) -> Option<&Caller> {
        let presented = digest(presented);
        let mut found = None;
        for (key, caller) in &self.keys {
            if bool::from(key.ct_eq(&presented)) {
                found = Some(caller);
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key from `x-api-key`, or from `Authorization: Bearer <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key") {
        return v.to_str().ok();
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Rejects the request with `401` unless it carries a configured API key; records
/// the key's id on the request span and in the extensions as [`Caller`].
pub async fn require_api_key(
    State(keys): State<Arc<ApiKeys>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = presented_key(request.headers())
        .and_then(|k| keys.identify(k))
        .ok_or(ApiError::Unauthorized)?
        .clone();
    let key_id = caller.key_id.clone();
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    super::access_log::record_key_id(&mut response, key_id);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys() -> ApiKeys {
        let tenants = Tenants::default();
        let admins = ["ops".to_owned()];
        ApiKeys::new(
            &[
                ApiKey {
                    id: "ops".into(),
                    key: Secret::new("ops-key-0123456789"),
                },
                ApiKey {
                    id: "billing".into(),
                    key: Secret::new("billing-key-0123456789"),
                },
            ],
            &tenants,
            &admins,
        )
    }

    #[test]
    fn a_configured_key_is_identified_by_its_id() {
        let keys = keys();
        let billing = keys.identify("billing-key-0123456789").unwrap();
        assert_eq!(&*billing.key_id, "billing");
        assert_eq!(*billing.scope, Scope::Key("billing".into()));
        let ops = keys.identify("ops-key-0123456789").unwrap();
        assert_eq!(&*ops.key_id, "ops");
        assert!(ops.is_admin());
    }

    #[test]
    fn near_misses_are_refused() {
        for wrong in [
            "",
            "ops-key-012345678",
            "ops-key-01234567890",
            "OPS-KEY-0123456789",
            " ops-key-0123456789",
        ] {
            assert!(keys().identify(wrong).is_none(), "{wrong:?}");
        }
    }

    #[test]
    fn both_header_forms_are_read() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&h), Some("xyz"));
    }
}
