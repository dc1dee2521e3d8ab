//! Builds the gateway from its configuration and runs it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::gateway::{AppState, router};
use crate::publisher::{Publisher, SnsPublisher};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// No publisher can be built from this configuration.
    #[error("{0}")]
    Publisher(String),
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// A bound, ready-to-run gateway.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Builds the publisher named by the configuration and binds the listener.
    pub async fn build(config: &GatewayConfig) -> Result<Self, StartupError> {
        let publisher: Arc<dyn Publisher> = match &config.sns_topic_arn {
            Some(arn) => {
                let client = SnsPublisher::client_from_env().await;
                tracing::info!(mode = "sns", topic = %arn, "publishing to SNS");
                Arc::new(SnsPublisher::new(client, arn))
            }
            None => {
                return Err(StartupError::Publisher(
                    "SNS_TOPIC_ARN is not set: the embedded queue is not built yet, so set SNS_TOPIC_ARN to a topic".into(),
                ));
            }
        };
        Self::with_publisher(config, publisher).await
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
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes, then stops accepting connections and
    /// finishes the requests in flight before returning.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        tracing::info!(addr = %self.local_addr(), "listening");
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(StartupError::Serve)
    }
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
