//! The server loop: accepts connections on a listener and serves the router on each with
//! hyper's HTTP/1, bounded so that no client can hold the server: a connection must send its
//! request head within [`ConnectionLimits::header_read_timeout`] (also while idle between
//! requests), and at most [`ConnectionLimits::max_connections`] are open at once (the next
//! waits in the listener's backlog). On shutdown it stops accepting, lets in-flight requests
//! finish, and closes idle connections at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How connections are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a connection has to send a whole request head, counted from its first byte or,
    /// on a kept-alive connection, from the end of the previous response.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// 10 seconds for a request head, 768 connections (below the usual limit of 1,024 open
    /// files, leaving room for model files, the database and the blocking pool).
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 768,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting connections and
/// waits for in-flight requests to finish. Handlers see the client's address (for the audit
/// log) as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (stream, address) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small writes (a stream's chunks) go out at once instead of waiting for the ACK of
        // the previous one (Nagle's algorithm against delayed ACKs).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %address, "cannot set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(address));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %address, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
