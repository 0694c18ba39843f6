//! Serving the app on a listener: HTTP/1.1 (browsers reach Switchboard directly or through a
//! proxy; HTTP/2 would need TLS it does not terminate), `TCP_NODELAY`, a limit on how long a client
//! may take to send a request's head (or stay idle between requests), the peer's address for rate
//! limits, and a graceful shutdown that lets requests in flight finish.
//!
//! Our own accept loop rather than `axum::serve`, which cannot set hyper's header-read timeout:
//! without it a client that sends its headers a byte a minute holds a connection for good.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Service;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the requests in flight.
/// A client gets `client_timeout` to send each request's head.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    client_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Tokens are small writes: without TCP_NODELAY, Nagle's algorithm can hold one back until
        // the previous one is acknowledged (up to 40 ms with delayed ACKs).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let service: Result<_, Infallible> = make_service.call(peer).await;
        let Ok(service) = service;
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(client_timeout)
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
