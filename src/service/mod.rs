//! The identity service (`idsync serve`): the admin API the operator syncs to, and
//! SCIM, sign-in and role resolution, over one store.

pub mod admin;
pub mod http;
pub mod metrics;
pub mod scim;
pub mod sso;
pub mod store;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use self::{admin::AdminService, http::AppState, metrics::ServiceMetrics, store::Store};

/// Everything `idsync serve` needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    /// The admin token's value (read from a file or the environment, never a flag).
    pub admin_token: String,
    /// Base URL IdPs and browsers reach the service at.
    pub public_url: String,
}

/// A running service: its address, and a way to stop it gracefully.
pub struct RunningService {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningService {
    /// Stops accepting connections, finishes in-flight requests, and waits.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await??;
        self.state.admin.store().close().await;
        Ok(())
    }
}

/// Opens the store and binds the listener; serving starts at once in the background.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningService> {
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                store::redact_url(&config.database_url)
            )
        })?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin = AdminService::new(store, config.public_url.clone());
    let state = Arc::new(AppState::new(
        admin,
        ServiceMetrics::new(),
        &config.admin_token,
    ));
    let app = http::router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok(RunningService {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Runs until SIGTERM or Ctrl-C, then drains in-flight requests.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let service = start(config.clone()).await?;
    tracing::info!(
        addr = %service.addr,
        public_url = %config.public_url,
        database = %store::redact_url(&config.database_url),
        "identity service listening"
    );
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    service.stop().await
}

/// Resolves when the process is asked to stop (SIGTERM from Kubernetes, Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
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
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}

/// Where the admin token comes from when none is configured: a file beside the
/// SQLite database, generated on first start.
pub fn default_admin_token_path() -> PathBuf {
    PathBuf::from(".idsync").join("admin-token")
}
