//! How connections are served: the accept loop around the router.
//!
//! `axum::serve` has no header-read timeout, no connection cap and no deadline
//! on graceful shutdown, so 200 clients that never finish a request head kept
//! 200 descriptors open and kept SIGTERM from ending the process. This loop
//! runs the same hyper server with:
//! - HTTP/1 only: hyper's automatic HTTP/2 detection reads the first bytes
//!   with no timeout at all, and h2c is not what load balancers send;
//! - a header-read timeout (`HEADER_READ_TIMEOUT_MS`), which also closes
//!   keep-alive connections that sit idle that long (hyper starts the timer
//!   whenever a connection waits for a request head);
//! - the same limit on a stalled write: a client that stops reading its
//!   responses loses its connection instead of holding it;
//! - a connection cap (`MAX_CONNECTIONS`): at the cap, new connections wait in
//!   the kernel's backlog instead of taking descriptors;
//! - a shutdown deadline (`SHUTDOWN_TIMEOUT_MS`): on the signal, stop
//!   accepting, let requests in flight finish, then close what is left.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::connection_io::ConnectionIo;

/// Limits on connections, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request head, and longest a
    /// keep-alive connection may sit idle.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest graceful shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

/// A connection slot: at once when one is free, else when a connection
/// closes (logged once each time the cap is reached).
async fn connection_slot(
    connections: &Arc<Semaphore>,
    max_connections: usize,
    at_cap_logged: &mut bool,
) -> OwnedSemaphorePermit {
    if let Ok(permit) = connections.clone().try_acquire_owned() {
        *at_cap_logged = false;
        return permit;
    }
    if !*at_cap_logged {
        tracing::warn!(
            max_connections,
            "at the connection cap: new connections wait until one closes"
        );
        *at_cap_logged = true;
    }
    connections
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
}

/// Serves `router` on `listener` until `shutdown` completes, then drains within
/// the shutdown deadline.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        async move {
            Ok::<_, Infallible>(
                router
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    tokio::pin!(shutdown);
    let mut at_cap_logged = false;
    loop {
        let permit = tokio::select! {
            p = connection_slot(&connections, limits.max_connections, &mut at_cap_logged) => p,
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, or a connection reset before accept:
                    // pause briefly rather than spin.
                    tracing::warn!(error.message = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(ConnectionIo::new(stream, limits.header_read_timeout));
        let connection = builder.serve_connection(io, service.clone()).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error.message = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(
                timeout_ms = limits.shutdown_timeout.as_millis() as u64,
                "connections still open at the shutdown deadline: closing them"
            );
        }
    }
}
