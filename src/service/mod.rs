//! The identity service (`idsync serve`): the admin API the operator syncs to, and
//! SCIM, sign-in and role resolution, over one store.

pub mod admin;
pub mod api_keys;
pub mod failure_audit;
pub mod http;
pub mod maintenance;
pub mod metrics;
pub mod scim;
pub mod session_cache;
pub mod sso;
pub mod store;
pub mod webhooks;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use self::{
    admin::AdminService,
    http::{AppState, client_addr::TrustedProxies, rate_limit::Budgets, server::Limits},
    store::Store,
};
use crate::{
    fingerprint::FingerprintKey,
    outbound::{ClientOptions, Guarded, OutboundPolicy},
};

/// Everything `idsync serve` needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    /// The admin token's value (read from a file or the environment, never a flag).
    pub admin_token: String,
    /// Base URL IdPs and browsers reach the service at.
    pub public_url: String,
    /// Which addresses requests to IdPs may reach.
    pub outbound: OutboundPolicy,
    /// Timeouts and caps of every listener.
    pub limits: Limits,
    /// Serve `/metrics` here instead of on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Per-source budgets for unauthenticated traffic and failed authentications.
    pub rate_limits: Budgets,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Audit entries older than this are deleted.
    pub audit_retention: Duration,
    /// How long a failing webhook endpoint waits before each retry; past the
    /// last, it is disabled.
    pub webhook_retry: Vec<Duration>,
}

/// `--audit-retention` by default: a little over a year, so a yearly access
/// review still finds the whole year.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

impl ServeConfig {
    /// The required settings; everything else at its default.
    pub fn new(
        listen: SocketAddr,
        database_url: impl Into<String>,
        admin_token: impl Into<String>,
        public_url: impl Into<String>,
    ) -> Self {
        Self {
            listen,
            database_url: database_url.into(),
            admin_token: admin_token.into(),
            public_url: public_url.into(),
            outbound: OutboundPolicy::default(),
            limits: Limits::default(),
            metrics_listen: None,
            rate_limits: Budgets::default(),
            trusted_proxies: TrustedProxies::default(),
            audit_retention: DEFAULT_AUDIT_RETENTION,
            webhook_retry: webhooks::RETRY_AFTER.to_vec(),
        }
    }
}

/// A running service: its addresses, and a way to stop it gracefully.
pub struct RunningService {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when it has a listener of its own.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    /// The maintenance and delivery tasks, stopped after the servers so
    /// that they write the counts of the last requests too.
    upkeep: (watch::Sender<bool>, [JoinHandle<()>; 2]),
}

impl RunningService {
    /// Stops accepting connections, finishes in-flight requests, and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        for server in self.servers {
            server.await??;
        }
        let (stop_upkeep, tasks) = self.upkeep;
        let _ = stop_upkeep.send(true);
        for task in tasks {
            task.await?;
        }
        self.state.admin.store().close().await;
        Ok(())
    }
}

/// Resolves once `stop` has been asked for (or the sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
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
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("listening for /metrics on {at}"))?,
        ),
        None => None,
    };
    let admin = AdminService::new(
        store,
        config.public_url.clone(),
        FingerprintKey::from_admin_token(&config.admin_token),
    );
    let outbound = Guarded::new(config.outbound.clone(), &ClientOptions::default())
        .map_err(|e| anyhow::anyhow!("building the outbound HTTP client: {e}"))?;
    let state = Arc::new(AppState::new(admin, &config, outbound.clone()));
    let (shutdown, rx) = watch::channel(false);
    let mut servers = Vec::new();
    let metrics_addr = match metrics_listener {
        Some(listener) => {
            let at = listener.local_addr()?;
            let app = http::metrics_router(state.clone(), &config.limits);
            let (limits, rx) = (config.limits.clone(), rx.clone());
            servers.push(tokio::spawn(async move {
                http::server::serve(listener, app, &limits, stopped(rx)).await
            }));
            Some(at)
        }
        None => None,
    };
    let (stop_upkeep, upkeep_rx) = watch::channel(false);
    let deliverer = webhooks::Deliverer::new(
        state.admin.store().clone(),
        config.outbound.clone(),
        config.webhook_retry.clone(),
        state.metrics.clone(),
    );
    let deliveries = tokio::spawn(deliverer.run(stopped(upkeep_rx.clone())));
    let upkeep = tokio::spawn(maintenance::run(
        state.admin.store().clone(),
        state.failures.clone(),
        state.scim.clone(),
        state.sso.clone(),
        config.audit_retention,
        stopped(upkeep_rx),
    ));
    let app = http::router(state.clone(), &config.limits, metrics_addr.is_none());
    let limits = config.limits.clone();
    servers.push(tokio::spawn(async move {
        http::server::serve(listener, app, &limits, stopped(rx)).await
    }));
    Ok(RunningService {
        addr,
        metrics_addr,
        state,
        shutdown,
        servers,
        upkeep: (stop_upkeep, [upkeep, deliveries]),
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
    crate::signal::shutdown().await;
    tracing::info!("shutting down: finishing in-flight requests");
    service.stop().await
}

/// Where the admin token comes from when none is configured: a file beside the
/// SQLite database, generated on first start.
pub fn default_admin_token_path() -> PathBuf {
    PathBuf::from(".idsync").join("admin-token")
}
