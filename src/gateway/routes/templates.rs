//! `GET /api/v1/templates`: the templates Herald checks sends against, for
//! the accounts of the caller's tenant's numbers (an admin's: every account).

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::Value;

use crate::gateway::AppState;
use crate::gateway::auth::Caller;

/// The cached templates: name, language, status, category, what each
/// component takes (`parameters`), and when their account was last listed.
#[utoipa::path(get, operation_id = "listTemplates", path = "/api/v1/templates", tag = "templates",
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "templates (wabaId, name, language, status, category, parameters, syncedAt) and accounts (wabaId, syncedAt, stale)", body = Object),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    if caller.is_admin() {
        return Json(state.templates.list(None));
    }
    let numbers = state.tenants.whatsapp_numbers(&caller.tenant);
    let accounts = state.templates.accounts_of(numbers.into_iter());
    Json(state.templates.list(Some(&accounts)))
}
