//! Reading a JSON request body with errors in Herald's problem format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::Value;

use super::error::ApiError;

/// The body's raw bytes and its parsed JSON. The bytes are kept because the
/// idempotency check compares bodies by their digest.
#[derive(Debug)]
pub struct JsonBody {
    /// The body as received.
    pub raw: Bytes,
    /// The body parsed once.
    pub value: Value,
}

/// The largest body accepted, set per router from `MAX_BODY_BYTES`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let RawBody(raw) = read_limited(request).await?;
        // serde_json checks UTF-8 and caps nesting at 128 levels, so hostile
        // bodies fail here with a message instead of exhausting the stack.
        let value =
            serde_json::from_slice(&raw).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        Ok(Self { raw, value })
    }
}

/// A body's bytes, unparsed, up to the route's [`BodyLimit`]: what signed
/// webhooks need, since their signature covers the exact bytes.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_limited(request).await
    }
}

async fn read_limited(request: Request) -> Result<RawBody, ApiError> {
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map_or(65_536, |l| l.0);
    let (parts, body) = request.into_parts();
    read_body(&parts.headers, body, limit).await.map(RawBody)
}

/// The length a request declares, if it declares one.
fn declared_length(headers: &header::HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Reads `body` whole, up to `limit` bytes: a declared length over the
/// limit is refused before a byte is read.
pub async fn read_body(
    headers: &header::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if declared_length(headers).is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::MalformedJson("the body could not be read".into())
        }
    })
}

/// The memory all webhook bodies being read may hold together
/// (`WEBHOOK_BODIES_MAX_BYTES`): each read reserves its declared length (or
/// the body limit when it declares none) before reading, waits at most
/// [`BodyBudget::WAIT`] for room, and else is refused with `503`.
#[derive(Debug)]
pub struct BodyBudget {
    /// Free KiB.
    free: tokio::sync::Semaphore,
    /// One body's limit (`WEBHOOK_MAX_BODY_BYTES`).
    limit: usize,
    /// The budget, in KiB.
    total_kib: usize,
}

impl BodyBudget {
    /// Longest a read waits for room in the budget.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(2);
    /// Longest a body may take to arrive once its room is reserved: a
    /// provider sends a full 2,000-report bucket (about 1.1 MB) in well under
    /// a second, and a sender that trickles must not hold the room for the
    /// whole request timeout.
    pub const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

    /// A budget of `total` bytes for bodies of at most `limit` bytes each.
    pub fn new(total: usize, limit: usize) -> Self {
        let total_kib = total.div_ceil(1024).max(1);
        Self {
            free: tokio::sync::Semaphore::new(total_kib),
            limit,
            total_kib,
        }
    }

    /// Reads `body` within one body's limit and the shared budget. The
    /// reservation comes back with the bytes: the caller holds it while it
    /// works on them (parsed, they take as much again), so the budget bounds
    /// what webhooks hold from the first byte read to the answer.
    pub async fn read(
        &self,
        headers: &header::HeaderMap,
        body: axum::body::Body,
    ) -> Result<(Bytes, tokio::sync::SemaphorePermit<'_>), ApiError> {
        let want = declared_length(headers)
            .unwrap_or(self.limit)
            .min(self.limit);
        let kib = u32::try_from(want.div_ceil(1024).clamp(1, self.total_kib)).unwrap_or(u32::MAX);
        let reserved = tokio::time::timeout(Self::WAIT, self.free.acquire_many(kib))
            .await
            .map_err(|_| ApiError::WebhooksBusy)?
            .map_err(|_| ApiError::WebhooksBusy)?;
        let bytes = tokio::time::timeout(Self::READ_DEADLINE, read_body(headers, body, self.limit))
            .await
            .map_err(|_| ApiError::BodyTimeout(Self::READ_DEADLINE.as_secs()))??;
        Ok((bytes, reserved))
    }
}

/// True for `application/json` and `application/<anything>+json`, any parameters.
fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(mime) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_json(None));
    }
}
