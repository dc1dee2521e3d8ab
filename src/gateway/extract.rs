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
    // A declared length over the limit is refused before a byte is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map(RawBody)
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::MalformedJson("the body could not be read".into())
            }
        })
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
