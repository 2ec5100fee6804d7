//! The listeners: an accept loop over hyper with the limits that keep the
//! service up whoever connects.
//!
//! `axum::serve` gives hyper no timer, so a connection that never finishes its
//! headers is held forever (40 such connections were all still open 45 s
//! later); here every connection has a header-read timeout (which is also the
//! idle timeout of a keep-alive connection), the number of connections is
//! capped (beyond it the kernel's backlog waits), and every request has a
//! deadline and a slot among a bounded number of requests in flight
//! ([`admit`]). HTTP/1.1 only: IdPs, browsers behind an ingress and
//! the operator all speak it, and it is the protocol these limits cover.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

use super::client_addr::{ClientAddr, TrustedProxies};
use tower::ServiceExt;

/// What every listener enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A client must send a request's headers within this (also how long an
    /// idle keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// A request must be answered within this, its body read included.
    pub request_timeout: Duration,
    /// Requests handled at once; more are answered 503 at once.
    pub max_concurrent_requests: usize,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
            max_connections: 8192,
        }
    }
}

/// What every request is admitted with, as middleware state.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    timeout: Duration,
    trusted: Arc<TrustedProxies>,
}

impl Admission {
    pub fn new(limits: &Limits, trusted: Arc<TrustedProxies>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            timeout: limits.request_timeout,
            trusted,
        }
    }
}

/// Admits a request: finds its client address (once, for every handler
/// after), gives it a slot among the requests in flight, and a deadline. One
/// layer for the three, since each layer costs every request a boxed future.
pub async fn admit(State(admission): State<Admission>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let client = admission.trusted.client(peer, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    let limits = admission;
    let scim = req.uri().path().starts_with("/scim/");
    let Ok(_slot) = limits.slots.clone().try_acquire_owned() else {
        return unavailable(
            scim,
            "the service is at its limit of requests in flight; retry",
        );
    };
    match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => unavailable(
            scim,
            "the request took longer than the service allows; retry",
        ),
    }
}

/// 503 with `Retry-After`, in the answer format of the path's API.
fn unavailable(scim: bool, detail: &str) -> Response {
    let mut response = if scim {
        crate::service::scim::error::ScimError::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .into_response()
    } else {
        super::error::ApiError::unavailable(detail).into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight (each within its deadline) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit,
        };
        // The semaphore is never closed, so a permit always comes.
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(Body::new)
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
