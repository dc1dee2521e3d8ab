//! `GET /console`: the operator's console, one page and its modules, every
//! byte inside the binary (`include_str!`: no CDN, no files beside the
//! binary, works offline). Plain HTML, CSS and ES modules with no framework
//! and no build step: the page is small (five views over a JSON API), a
//! framework would add a bundler or a vendored runtime to review and keep
//! current, and modules load as they are under a strict CSP.
//!
//! The page needs no key to load; it signs in with an API key kept in the
//! tab's `sessionStorage` and sends it as `x-api-key` on each API call
//! (never in a URL or a cookie). Its Content-Security-Policy allows
//! scripts, styles and connections to this origin only, no inline script
//! or style, no framing.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's policy: this origin only, nothing inline, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The assets: (name under `/console/`, content type, body).
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("console/api.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("console/views.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_str!("console/chart.js"),
    ),
];

const PAGE: &str = include_str!("console/index.html");

/// The console's routes (no API key: the page holds no data).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { serve("text/html; charset=utf-8", PAGE) }),
        )
        .route("/console/{asset}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => serve(kind, body),
        None => crate::gateway::error::ApiError::NotFound.into_response(),
    }
}

fn serve(kind: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary serves new modules: revalidate rather than mix versions.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
