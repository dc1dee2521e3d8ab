//! The HTTP API: `GET /ping`, `GET /health`, `POST /api/v1/send`,
//! `POST /api/v1/send/batch`, `GET /api/v1/messages/{id}`,
//! `GET /api/v1/dead-letters`, `/api/v1/opt-outs/{number}`, and the
//! providers' webhooks (`/webhooks/…`).
//!
//! [`router`] is a plain function over [`AppState`] so tests can drive it with
//! `tower::ServiceExt::oneshot`, without a socket.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Query, State};
use axum::http::HeaderName;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::{GatewayConfig, WebhookConfig};
use crate::domain::SendRules;
use crate::publisher::Publisher;
use crate::status::StatusStore;

pub mod access_log;
pub mod admission;
pub mod auth;
mod connection_io;
pub mod console;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod media_check;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod template_check;
pub mod window_check;

use admission::Admission;
use auth::ApiKeys;
use error::ApiError;
use extract::BodyLimit;
use idempotency::IdempotencyStore;
use rate_limit::KeyRateLimiter;

/// What every handler can reach. Cheap to clone: everything is behind an `Arc`.
#[derive(Clone)]
pub struct AppState {
    /// Where accepted envelopes go.
    pub publisher: Arc<dyn Publisher>,
    /// The configured API keys, as digests.
    pub api_keys: Arc<ApiKeys>,
    /// Remembered `Idempotency-Key`s.
    pub idempotency: Arc<IdempotencyStore>,
    /// Per-key request limits, when `RATE_LIMIT_PER_KEY` is set.
    pub rate_limiter: Option<Arc<KeyRateLimiter>>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take, publishing included.
    pub request_timeout: Duration,
    /// Kept media (the embedded default's files); `None` with SNS.
    pub media: Option<Arc<dyn crate::media::MediaStore>>,
    /// `MEDIA_MAX_BYTES`.
    pub media_max_bytes: u64,
    /// Uploads read at once (more are `429`): bounds the disk and memory
    /// uploads in flight can take.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Most entries in one batch, and the bounds on `defaults`.
    pub batch_limits: crate::domain::batch::BatchLimits,
    /// Largest batch body in bytes.
    pub batch_max_body_bytes: usize,
    /// API key ids that may see every tenant's dead letters (`ADMIN_KEY_IDS`).
    pub admin_key_ids: Arc<HashSet<String>>,
    /// The tenants: who may send from which number or sender.
    pub tenants: Arc<crate::tenants::Tenants>,
    /// The numbers received messages are marked read from.
    pub read_receipts: Arc<crate::channels::whatsapp::read_receipts::ReadReceipts>,
    /// The in-process delivery pipeline (embedded default), for `/health`'s
    /// view of the providers' circuits.
    pub delivery: Option<Arc<crate::delivery::Pipeline>>,
    /// Where statuses are kept: the embedded database, DynamoDB, or nowhere.
    pub statuses: Option<Arc<dyn StatusStore>>,
    /// Where messages are searched and counted (the same store).
    pub search: Option<Arc<dyn crate::search::SearchStore>>,
    /// The providers' webhook secrets.
    pub webhooks: Arc<WebhookConfig>,
    /// The memory webhook bodies being read may hold together.
    pub webhook_bodies: Arc<extract::BodyBudget>,
    /// When each webhook last received a signed request.
    pub webhooks_seen: Arc<routes::webhooks::LastSeen>,
    /// `GET /metrics` is served (`METRICS`, default on).
    pub metrics: bool,
    /// What a valid message is checked against before publishing.
    pub admission: Arc<Admission>,
    /// Validation settings (`SMS_MAX_SEGMENTS`).
    pub send_rules: SendRules,
    /// The WhatsApp templates template sends are checked against.
    pub templates: Arc<crate::templates::service::Templates>,
}

impl AppState {
    /// Builds the state from configuration and a publisher.
    pub fn new(config: &GatewayConfig, publisher: Arc<dyn Publisher>) -> Self {
        Self {
            publisher: Arc::new(crate::publisher::measured::MeasuredPublisher::new(
                publisher,
            )),
            metrics: config.metrics,
            api_keys: Arc::new(ApiKeys::new(
                &config.api_keys,
                &config.tenants,
                &config.admin_key_ids,
            )),
            tenants: config.tenants.clone(),
            read_receipts: Arc::new(
                crate::channels::whatsapp::read_receipts::ReadReceipts::from_config(
                    &config.delivery,
                )
                .unwrap_or_default(),
            ),
            idempotency: Arc::new(IdempotencyStore::new(
                config.idempotency_ttl,
                config.idempotency_max_keys,
            )),
            rate_limiter: (config.rate_limit_per_key > 0).then(|| {
                Arc::new(KeyRateLimiter::new(
                    &config.api_keys,
                    config.rate_limit_per_key,
                ))
            }),
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            media: None,
            media_max_bytes: config.media_max_bytes,
            uploads: Arc::new(tokio::sync::Semaphore::new(routes::media::MAX_UPLOADS)),
            admin_key_ids: Arc::new(config.admin_key_ids.iter().cloned().collect()),
            batch_limits: crate::domain::batch::BatchLimits {
                max_messages: config.batch_max_messages,
                max_defaults_bytes: config.max_body_bytes,
                // What a body at the batch limit could hold four times over.
                max_copied_bytes: config.batch_max_body_bytes.saturating_mul(4),
            },
            batch_max_body_bytes: config.batch_max_body_bytes,
            delivery: None,
            statuses: None,
            search: None,
            webhooks: Arc::new(config.webhooks.clone()),
            webhooks_seen: Arc::default(),
            webhook_bodies: Arc::new(extract::BodyBudget::new(
                config.webhooks.bodies_max_bytes,
                config.webhooks.max_body_bytes,
            )),
            admission: Arc::new(Admission::new(&config.delivery, config.tenants.clone())),
            send_rules: SendRules {
                sms_max_segments: config.sms_max_segments,
                schedule_max_days: config.schedule_max_days,
            },
            templates: Arc::new(crate::templates::service::Templates::new(&config.templates)),
        }
    }

    /// Claims `Idempotency-Key`s across the fleet in `table` as well.
    pub fn share_idempotency_keys(
        &mut self,
        table: crate::fleet::FleetTable,
        config: &GatewayConfig,
    ) {
        // A claim outlives the request that holds it, publish included, so
        // it lapses only when that gateway is gone.
        let lease = config.request_timeout + Duration::from_secs(5);
        let keys = crate::fleet::keys::FleetKeys::new(table, config.idempotency_ttl, lease);
        self.idempotency = Arc::new(
            IdempotencyStore::new(config.idempotency_ttl, config.idempotency_max_keys)
                .with_fleet(keys),
        );
    }

    /// Keeps statuses and opt-outs in `store`; the gateway's opt-out check
    /// reads them through a cache of `opt_out_ttl` (zero: none).
    pub fn set_status_store(&mut self, store: Arc<dyn StatusStore>, opt_out_ttl: Duration) {
        self.admission = Arc::new(self.admission.with_store(&store, opt_out_ttl));
        self.templates.set_store(store.clone());
        self.statuses = Some(store);
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes that need an API key. The key is checked only for matched
/// routes, before the body is read.
fn authenticated_routes(state: &AppState) -> Router<AppState> {
    use routes::dead_letters;
    Router::new()
        .route("/api/v1/send", post(routes::messages::send))
        // A batch has its own body limit (the route's extension is inserted
        // after the router-wide one, so it wins).
        .route(
            "/api/v1/send/batch",
            post(routes::batch::send_batch).layer(Extension(BodyLimit(state.batch_max_body_bytes))),
        )
        .route("/api/v1/dead-letters", get(dead_letters::list))
        .route("/api/v1/event-dead-letters", get(dead_letters::list_events))
        .route(
            "/api/v1/event-dead-letters/{id}",
            axum::routing::delete(dead_letters::delete_event),
        )
        .route(
            "/api/v1/event-dead-letters/{id}/redrive",
            post(dead_letters::redrive_event),
        )
        .route(
            "/api/v1/dead-letters/{id}",
            axum::routing::delete(dead_letters::delete),
        )
        .route(
            "/api/v1/dead-letters/{id}/redrive",
            post(dead_letters::redrive),
        )
        .route("/api/v1/messages", get(routes::search::list))
        .route("/api/v1/stats", get(routes::search::stats))
        .route(
            "/api/v1/messages/{id}",
            get(routes::status::get).delete(routes::cancel::cancel_message),
        )
        .route(
            "/api/v1/batches/{batchId}",
            axum::routing::delete(routes::cancel::cancel_batch),
        )
        .route("/api/v1/contacts/{number}", get(routes::contacts::get))
        // An upload counts its own bytes against its type's limit; a
        // multipart body (parts' headers included) is bounded by the largest.
        .route(
            "/api/v1/media",
            post(routes::media::upload).layer(axum::extract::DefaultBodyLimit::max(
                usize::try_from(state.media_max_bytes).unwrap_or(usize::MAX) + 64 * 1024,
            )),
        )
        .route(
            "/api/v1/media/{id}",
            get(routes::media::get).delete(routes::media::delete),
        )
        .route("/api/v1/templates", get(routes::templates::list))
        .route(
            "/api/v1/inbound/{providerMessageId}/read",
            axum::routing::post(routes::inbound::read),
        )
        .route(
            "/api/v1/opt-outs/{number}",
            get(routes::opt_outs::get)
                .put(routes::opt_outs::put)
                .delete(routes::opt_outs::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            state.api_keys.clone(),
            auth::require_api_key,
        ))
}

/// The providers' webhooks, one route per webhook in the registry: no API
/// key (each checks its own credentials).
fn webhook_routes(state: &AppState) -> Router<AppState> {
    use routes::webhooks;
    let mut router = Router::new();
    for webhook in crate::channels::inbound_webhooks(&state.webhooks) {
        let route = webhook.route();
        let receive = {
            let webhook = webhook.clone();
            move |State(state): State<AppState>, headers, body| {
                webhooks::receive(state, webhook, headers, body)
            }
        };
        let mut methods = post(receive);
        if route.handshake.is_some() {
            methods = methods.get(move |Query(query)| webhooks::handshake(webhook, query));
        }
        router = router.route(route.path, methods);
    }
    router
}

/// The gateway's routes and middleware.
pub fn router(state: AppState) -> Router {
    let authenticated = authenticated_routes(&state);
    let webhooks = webhook_routes(&state);
    let timeout = state.request_timeout;
    let body_limit = BodyLimit(state.max_body_bytes);
    let mut open = Router::new()
        .route("/ping", get(routes::health::ping))
        .route("/health", get(routes::health::health))
        .route("/openapi.json", get(openapi::document));
    if state.metrics {
        open = open.route("/metrics", get(routes::metrics::scrape));
    }
    open.merge(authenticated)
        .merge(webhooks)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .merge(openapi::docs_router())
        .merge(console::router())
        .layer(Extension(body_limit))
        // Outermost first: every response carries a request id, every request
        // gets one log line with that id (panics and timeouts included), and
        // nothing runs forever.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    X_REQUEST_ID.clone(),
                    MakeRequestUuid,
                ))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
                .layer(middleware::from_fn(access_log::log_request))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal("handler panicked").into_response()
                }))
                // A request over REQUEST_TIMEOUT_MS (a stalled body, a stuck
                // publish) ends as a problem document, like every other error;
                // an upload has UPLOAD_TIMEOUT in all, and REQUEST_TIMEOUT_MS
                // for each of its chunks.
                .layer(middleware::from_fn_with_state(timeout, limit_time)),
        )
}

/// How long a media upload may take in all.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Ends a request past its time with `ApiError::TimedOut`.
async fn limit_time(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let upload =
        request.method() == axum::http::Method::POST && request.uri().path() == "/api/v1/media";
    let limit = if upload { UPLOAD_TIMEOUT } else { timeout };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::TimedOut.into_response(),
    }
}
