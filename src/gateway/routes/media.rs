//! `POST /api/v1/media`, `GET` and `DELETE /api/v1/media/{id}`: upload once,
//! reuse. An upload is the body with its `Content-Type` (`?filename=`
//! optional) or `multipart/form-data` with one `file` part; its type is
//! checked before a byte is read (`415`), its size against WhatsApp's limit
//! for the type (and `MEDIA_MAX_BYTES`) from `Content-Length` and as it
//! arrives (`413`, naming the limit). It is read to disk as it comes, never
//! whole in memory, and kept by content per tenant: the same bytes posted
//! twice by a tenant are the same `mediaId`. Media is the tenant's: every
//! key of the tenant (and an admin) sees it, no other.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::Deserialize;

use crate::gateway::AppState;
use crate::gateway::auth::Caller;
use crate::gateway::error::ApiError;
use crate::media::spool::{SpoolError, Spooled, spool};
use crate::media::{MediaInfo, MediaStore, kinds};

/// Uploads read at once, in all; more are `429` for a second.
pub const MAX_UPLOADS: usize = 16;

/// `?filename=` of a raw upload.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    filename: Option<String>,
}

/// What an upload is checked against.
struct Limits {
    mime: &'static str,
    accepted: kinds::Accepted,
    limit: u64,
    idle: Duration,
}

impl Limits {
    fn of(state: &AppState, content_type: &str) -> Result<Self, ApiError> {
        let (mime, accepted) = kinds::accepted(content_type).ok_or_else(|| {
            ApiError::MediaTypeNotAccepted(content_type.chars().take(100).collect())
        })?;
        Ok(Self {
            mime,
            accepted,
            limit: accepted.max_bytes.min(state.media_max_bytes),
            idle: state.request_timeout,
        })
    }

    fn too_large(&self) -> ApiError {
        ApiError::MediaTooLarge {
            kind: self.accepted.kind,
            limit: self.limit,
        }
    }
}

/// Keeps an upload; `201` with its id.
#[utoipa::path(post, operation_id = "uploadMedia", path = "/api/v1/media", tag = "media",
    security(("api_key" = []), ("bearer" = [])),
    params(("filename" = Option<String>, Query, description = "The file's name (a raw upload)")),
    request_body(content = Vec<u8>, description = "The file, with its Content-Type; or multipart/form-data with one `file` part", content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Kept: {mediaId, sha256, size, mimeType, filename?}", body = crate::gateway::openapi::MediaView),
        (status = 400, description = "upload-incomplete: the body broke off, or no file part", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "media-too-large: over WhatsApp's limit for the type (named)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "media-type-not-accepted: a type WhatsApp refuses", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "16 uploads are being read, or over RATE_LIMIT_PER_KEY", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "media-not-configured (SNS mode)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The media store failed", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let store = state.media.clone().ok_or(ApiError::NoMediaStore)?;
    if let Some(limiter) = &state.rate_limiter {
        limiter
            .check(&caller.key_id)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    }
    let _slot = state
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::RateLimited {
            retry_after: Duration::from_secs(1),
        })?;
    let content_type = header_str(request.headers(), header::CONTENT_TYPE);
    let (limits, filename, spooled) = if content_type.starts_with("multipart/form-data") {
        read_multipart(&state, store.as_ref(), request).await?
    } else {
        let limits = Limits::of(&state, &content_type)?;
        refuse_declared_size(request.headers(), &limits)?;
        let body = request.into_body().into_data_stream();
        let spooled = read(body, store.as_ref(), &limits).await?;
        (limits, query.filename, spooled)
    };
    if limits.accepted.kind == "sticker" {
        let limit = kinds::sticker_limit(&spooled.head);
        if spooled.size > limit {
            return Err(ApiError::MediaTooLarge {
                kind: "sticker",
                limit,
            });
        }
    }
    let info = MediaInfo {
        media_id: crate::media::media_id(&caller.tenant, &spooled.sha256),
        tenant: caller.tenant.to_string(),
        sha256: spooled.sha256.clone(),
        size: spooled.size,
        mime_type: limits.mime.to_owned(),
        filename: filename.map(|f| f.chars().take(240).collect()),
        created_at_ms: crate::clock::now_ms(),
    };
    let kept = store
        .keep(info, spooled.take())
        .await
        .map_err(ApiError::MediaUnavailable)?;
    Ok((StatusCode::CREATED, Json(kept.view())).into_response())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `413` at once when `Content-Length` already says the body is too large.
fn refuse_declared_size(headers: &HeaderMap, limits: &Limits) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limits.limit => Err(limits.too_large()),
        _ => Ok(()),
    }
}

async fn read<S, E>(body: S, store: &dyn MediaStore, limits: &Limits) -> Result<Spooled, ApiError>
where
    S: Stream<Item = Result<axum::body::Bytes, E>>,
    E: std::fmt::Display,
{
    spool(body, store.spool_dir(), limits.limit, limits.idle)
        .await
        .map_err(|e| match e {
            SpoolError::TooLarge { .. } => limits.too_large(),
            SpoolError::Body(why) => {
                ApiError::UploadIncomplete(format!("the upload broke off: {why}"))
            }
            SpoolError::Io(e) => ApiError::MediaUnavailable(crate::media::MediaError::new(
                "cannot write an upload to disk",
                e,
            )),
        })
}

/// The one `file` part of a multipart upload, read as it arrives.
async fn read_multipart(
    state: &AppState,
    store: &dyn MediaStore,
    request: Request,
) -> Result<(Limits, Option<String>, Spooled), ApiError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::UploadIncomplete(e.body_text()))?;
    let broken =
        |e: axum::extract::multipart::MultipartError| ApiError::UploadIncomplete(e.body_text());
    while let Some(field) = multipart.next_field().await.map_err(broken)? {
        if field.name() != Some("file") {
            continue;
        }
        let limits = Limits::of(state, field.content_type().unwrap_or_default())?;
        let filename = field.file_name().map(str::to_owned);
        let chunks = futures_util::stream::unfold(field, |mut field| async move {
            field.chunk().await.transpose().map(|chunk| (chunk, field))
        });
        let spooled = read(chunks, store, &limits).await?;
        return Ok((limits, filename, spooled));
    }
    Err(ApiError::UploadIncomplete(
        "a multipart upload needs a part named file".into(),
    ))
}

/// The media, if it is the caller's tenant's.
async fn owned(
    store: &Arc<dyn MediaStore>,
    caller: &Caller,
    id: &str,
) -> Result<MediaInfo, ApiError> {
    if !crate::media::is_media_id(id) {
        return Err(ApiError::MediaNotFound);
    }
    match store.info(id).await.map_err(ApiError::MediaUnavailable)? {
        Some(info) if caller.is_admin() || *info.tenant == *caller.tenant => Ok(info),
        _ => Err(ApiError::MediaNotFound),
    }
}

/// The bytes, with their type.
#[utoipa::path(get, operation_id = "getMedia", path = "/api/v1/media/{id}", tag = "media",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The mediaId")),
    responses(
        (status = 200, description = "The bytes, with their Content-Type", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such media for this key's tenant", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "media-not-configured (SNS mode)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.media.clone().ok_or(ApiError::NoMediaStore)?;
    owned(&store, &caller, &id).await?;
    let Some((info, body)) = store.open(&id).await.map_err(ApiError::MediaUnavailable)? else {
        return Err(ApiError::MediaNotFound);
    };
    Ok((
        [
            (header::CONTENT_TYPE, info.mime_type.clone()),
            (header::CONTENT_LENGTH, info.size.to_string()),
            // Served as a file, never rendered as a page of this origin.
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CONTENT_DISPOSITION, "attachment".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Forgets the media.
#[utoipa::path(delete, operation_id = "deleteMedia", path = "/api/v1/media/{id}", tag = "media",
    security(("api_key" = []), ("bearer" = [])),
    params(("id" = String, Path, description = "The mediaId")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 401, description = "Missing or unknown API key", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such media for this key's tenant", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "media-not-configured (SNS mode)", body = crate::gateway::error::ProblemDocument, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = state.media.clone().ok_or(ApiError::NoMediaStore)?;
    owned(&store, &caller, &id).await?;
    match store
        .delete(&id)
        .await
        .map_err(ApiError::MediaUnavailable)?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::MediaNotFound),
    }
}
