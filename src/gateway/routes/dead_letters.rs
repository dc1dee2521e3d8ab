//! `GET /api/v1/dead-letters`: what the embedded default gave up on, newest first.

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;

/// Query parameters.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// How many to return (1-1000), default 100.
    limit: Option<usize>,
}

/// Lists dead letters with their reason and attempts: the caller's own (those
/// sent with its API key), or every tenant's for a key id named in
/// `ADMIN_KEY_IDS`. With SNS they live in the SQS dead-letter queue instead, so
/// this route answers 404 there.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let limit = match query {
        Ok(Query(ListQuery { limit: None })) => 100,
        Ok(Query(ListQuery { limit: Some(n) })) if (1..=1000).contains(&n) => n,
        _ => {
            return Err(ApiError::InvalidHeader(
                "query parameter limit must be a number from 1 to 1000".into(),
            ));
        }
    };
    let scope = (!state.admin_key_ids.contains(caller.key_id.as_ref())).then_some(&*caller.key_id);
    match state.publisher.dead_letters(limit, scope).await {
        None => Err(ApiError::NotFound),
        Some(Ok(items)) => Ok(Json(json!({ "deadLetters": items }))),
        Some(Err(e)) => Err(ApiError::Unavailable(e)),
    }
}
