//! Builds the gateway from its configuration and runs it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::delivery::{Pipeline, RetryPolicy};
use crate::embedded::event_sender::EventSender;
use crate::embedded::{EmbeddedQueue, Worker};
use crate::gateway::server::{ConnectionLimits, serve};
use crate::gateway::{AppState, router};
use crate::publisher::{EmbeddedPublisher, Publisher, SnsPublisher, StatusRecordingPublisher};
use crate::schedule::ScheduleStore;
use crate::schedule::publisher::SchedulingPublisher;
use crate::schedule::sweep::Sweeper;
use crate::status::StatusStore;
use crate::status::dynamodb::DynamoStatusStore;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The embedded queue cannot be opened in `HERALD_DATA_DIR`.
    #[error("HERALD_DATA_DIR")]
    EmbeddedQueue(#[source] crate::embedded::QueueError),
    /// The delivery pipeline (its provider clients) cannot be built.
    #[error(transparent)]
    Pipeline(#[from] crate::delivery::PipelineError),
    /// The HTTP client that POSTs events cannot be built.
    #[error("EVENTS_WEBHOOK_URL")]
    EventsClient(#[source] reqwest::Error),
    /// The SNS publisher cannot be built (the topic, the lean client).
    #[error(transparent)]
    Sns(#[from] crate::publisher::sns::SnsSetupError),
    /// A resource the configuration names cannot be used.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// A bound, ready-to-run gateway.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    /// The embedded default's delivery worker, when there is no SNS topic.
    worker: Option<Worker>,
    /// The embedded default's event sender, when `EVENTS_WEBHOOK_URL` is set.
    events: Option<EventSender>,
    /// With SNS and `STATUS_TABLE`: publishes scheduled messages when due.
    sweeper: Option<Sweeper>,
    /// The embedded default's keeper of inbound media.
    downloader: Option<crate::embedded::downloader::Downloader>,
}

impl Application {
    /// Builds the publisher named by the configuration and binds the listener:
    /// SNS when `SNS_TOPIC_ARN` is set, otherwise the embedded queue with its
    /// in-process delivery worker.
    pub async fn build(config: &GatewayConfig) -> Result<Self, StartupError> {
        if config.metrics && crate::metrics::install().is_none() {
            tracing::warn!("another metrics recorder is installed: GET /metrics will answer 404");
        }
        let Some(arn) = &config.sns_topic_arn else {
            return Self::build_embedded(config).await;
        };
        let publisher = SnsPublisher::from_env(
            arn,
            config.sns_batch_linger,
            config.sns_lean_client,
            config.aws_timeouts,
        )
        .await?;
        let client = if config.sns_lean_client {
            "lean"
        } else {
            "sdk"
        };
        tracing::info!(mode = "sns", topic = %arn, sns_client = client, "publishing to SNS; delivery is herald-consumer's job");
        let Some(store) =
            DynamoStatusStore::from_config(&config.status, config.aws_timeouts).await?
        else {
            tracing::info!(
                "no STATUS_TABLE: statuses are not kept (GET /api/v1/messages/{{id}} answers 501)"
            );
            let mut app = Self::with_publisher(config, Arc::new(publisher)).await?;
            app.state.media = media_bucket(config).await;
            app.log_webhooks();
            return Ok(app);
        };
        tracing::info!(table = ?config.status.table, events_topic = ?config.status.events_topic_arn, "statuses kept in DynamoDB");
        let fleet = store.fleet_table();
        let topic: Arc<dyn Publisher> = Arc::new(publisher);
        let store = store.with_failover(topic.clone());
        let store = if config.media_bucket.is_some() {
            store.with_media_jobs()
        } else {
            store
        };
        let dynamo = Arc::new(store);
        let store: Arc<dyn StatusStore> = dynamo.clone();
        let search: Arc<dyn crate::search::SearchStore> = dynamo.clone();
        let schedule: Arc<dyn ScheduleStore> = dynamo;
        let recording = StatusRecordingPublisher::new(topic.clone(), store.clone());
        let publisher =
            SchedulingPublisher::new(Arc::new(recording), schedule.clone(), store.clone());
        let mut app = Self::with_publisher(config, Arc::new(publisher)).await?;
        app.sweeper = Some(Sweeper::new(schedule, topic));
        app.state.media = media_bucket(config).await;
        app.state
            .set_status_store(store, crate::gateway::admission::SNS_OPT_OUT_CACHE);
        app.state.search = Some(search);
        app.state.share_idempotency_keys(fleet, config);
        tracing::info!("Idempotency-Keys are claimed across the fleet in STATUS_TABLE");
        app.log_webhooks();
        Ok(app)
    }

    async fn build_embedded(config: &GatewayConfig) -> Result<Self, StartupError> {
        let queue = EmbeddedQueue::open(
            &config.data_dir,
            config.embedded_max_db_mb.saturating_mul(1 << 20),
        )
        .map_err(StartupError::EmbeddedQueue)?;
        queue.set_shares(config.tenants.shares());
        clear_spool(config);
        let media: Arc<dyn crate::media::MediaStore> =
            Arc::new(crate::media::files::FileMediaStore::new(&config.data_dir));
        let pipeline = Pipeline::from_config(&config.delivery)?
            .with_tenants(config.tenants.clone())
            .with_media(media.clone());
        let delivery = pipeline.describe();
        tracing::info!(mode = "embedded", data_dir = %queue.data_dir().display(), delivery = %delivery,
            "no SNS_TOPIC_ARN: running the whole pipeline here on the embedded durable queue");
        if config.delivery.console_by_default {
            tracing::warn!(
                "no WhatsApp credentials: messages are printed to stdout, not sent; set WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID to send"
            );
        }
        let events = config.status.events_webhook.as_ref();
        queue.configure_statuses(config.status.ttl, events.is_some());
        let statuses: Arc<dyn StatusStore> = Arc::new(queue.clone());
        let pipeline = Arc::new(pipeline.with_statuses(statuses.clone()));
        let worker = Worker::new(queue.clone(), pipeline.clone());
        let events = match events {
            None => None,
            Some(webhook) => {
                tracing::info!(url = %webhook.loggable_url(), "events are POSTed to EVENTS_WEBHOOK_URL, signed as Standard Webhooks");
                let retry = RetryPolicy {
                    base: config.delivery.retry_base,
                    max: config.delivery.retry_max,
                    ..RetryPolicy::default()
                };
                Some(
                    EventSender::new(
                        queue.clone(),
                        webhook.clone(),
                        retry,
                        config.delivery.max_attempts,
                    )
                    .map_err(StartupError::EventsClient)?,
                )
            }
        };
        let mut app =
            Self::with_publisher(config, Arc::new(EmbeddedPublisher::new(queue.clone()))).await?;
        app.state.delivery = Some(pipeline);
        app.state.media = Some(media.clone());
        let retry = RetryPolicy {
            base: config.delivery.retry_base,
            max: config.delivery.retry_max,
            ..RetryPolicy::default()
        };
        app.downloader = Some(crate::embedded::downloader::Downloader::new(
            queue.clone(),
            media,
            app.state.read_receipts.clone(),
            retry,
            config.delivery.max_attempts,
        ));
        app.state
            .set_status_store(statuses, std::time::Duration::ZERO);
        app.state.search = Some(Arc::new(queue.clone()));
        app.worker = Some(worker);
        app.events = events;
        app.log_webhooks();
        Ok(app)
    }

    /// Binds the listener around a given publisher (tests pass their own).
    pub async fn with_publisher(
        config: &GatewayConfig,
        publisher: Arc<dyn Publisher>,
    ) -> Result<Self, StartupError> {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            state: AppState::new(config, publisher),
            limits: ConnectionLimits {
                header_read_timeout: config.header_read_timeout,
                max_connections: config.max_connections,
                shutdown_timeout: config.shutdown_timeout,
            },
            worker: None,
            events: None,
            sweeper: None,
            downloader: None,
        })
    }

    /// Says which provider webhooks answer, and why one that is configured
    /// does not (no status store to record what it carries).
    fn log_webhooks(&self) {
        let webhooks = crate::channels::inbound_webhooks(&self.state.webhooks);
        let configured: Vec<&str> = webhooks
            .iter()
            .filter(|w| w.is_configured())
            .map(|w| w.route().path)
            .collect();
        let off: Vec<&str> = webhooks
            .iter()
            .filter(|w| !w.is_configured())
            .map(|w| w.route().path)
            .collect();
        if self.state.statuses.is_none() && !configured.is_empty() {
            tracing::warn!(webhooks = %configured.join(", "), "provider webhooks are configured but no status store is (STATUS_TABLE): they are off");
            return;
        }
        tracing::info!(
            on = %configured.join(", "),
            off = %off.join(", "),
            "provider webhooks (off until their secrets are set: WHATSAPP_APP_SECRET, INFOBIP_WEBHOOK_SECRET or INFOBIP_WEBHOOK_BASIC)"
        );
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes. Then, at once and together: the
    /// server stops accepting connections and finishes the requests in flight,
    /// and (embedded default) the worker stops leasing and finishes its
    /// deliveries in flight; both within `SHUTDOWN_TIMEOUT_MS`. What is still
    /// queued stays on disk for the next start.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        tracing::info!(addr = %self.local_addr(), "listening");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // One deadline for everything, fixed when the signal arrives.
        let deadline = Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
        let limits = self.limits;
        let set_deadline = deadline.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = set_deadline.set(tokio::time::Instant::now() + limits.shutdown_timeout);
            let _ = stop.send(true);
        });
        let on_stop = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let worker = self
            .worker
            .map(|w| tokio::spawn(w.run_until_stopped(on_stop(stopped.clone()))));
        let events = self
            .events
            .map(|e| tokio::spawn(e.run_until_stopped(on_stop(stopped.clone()))));
        let sweeper = self
            .sweeper
            .map(|s| tokio::spawn(s.run_until_stopped(on_stop(stopped.clone()))));
        if let Some(downloader) = self.downloader {
            // A download cut short is a job still due: the next start
            // takes it again.
            tokio::spawn(downloader.run_until_stopped(on_stop(stopped.clone())));
        }
        if self.state.templates.configured() {
            let templates = self.state.templates.clone();
            tokio::spawn(templates.run_until_stopped(on_stop(stopped.clone())));
        }
        serve(
            self.listener,
            router(self.state),
            limits,
            on_stop(stopped.clone()),
        )
        .await;
        let until = deadline
            .get()
            .copied()
            .unwrap_or_else(|| tokio::time::Instant::now() + limits.shutdown_timeout);
        if let Some(worker) = worker
            && tokio::time::timeout_at(until, worker).await.is_err()
        {
            tracing::warn!(
                "deliveries still in flight at the shutdown deadline: they will be delivered again after the restart"
            );
        }
        if let Some(sweeper) = sweeper
            && tokio::time::timeout_at(until, sweeper).await.is_err()
        {
            tracing::warn!(
                "a sweep of the schedule was publishing at the shutdown deadline: its messages are published again when their claims lapse"
            );
        }
        if let Some(events) = events
            && tokio::time::timeout_at(until, events).await.is_err()
        {
            tracing::warn!(
                "events still being sent at the shutdown deadline: they will be sent again after the restart"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Removes what uploads cut short by a stop left in the spool; its path.
fn clear_spool(config: &GatewayConfig) -> std::path::PathBuf {
    let spool = config.data_dir.join("media").join("incoming");
    if let Err(e) = std::fs::remove_dir_all(&spool)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error.message = %e, "cannot clear the media spool");
    }
    spool
}

/// The S3 media store `MEDIA_BUCKET` names (SNS mode), if any.
async fn media_bucket(config: &GatewayConfig) -> Option<Arc<dyn crate::media::MediaStore>> {
    let bucket = config.media_bucket.as_ref()?;
    let spool = clear_spool(config);
    tracing::info!(bucket = %bucket, "media kept in S3 (MEDIA_BUCKET)");
    let store = crate::media::s3::S3MediaStore::from_env(bucket, config.aws_timeouts, &spool).await;
    Some(Arc::new(store))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
