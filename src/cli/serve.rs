//! `idsync serve`.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::Args;

use crate::{
    api::DurationSpec,
    service::{
        self, ServeConfig,
        http::{
            client_addr::TrustedProxies,
            rate_limit::{Budget, Budgets},
            server::Limits,
        },
    },
};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IDSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database: `sqlite://PATH` (one replica) or `postgres://…` (several replicas).
    #[arg(
        long,
        env = "IDSYNC_DATABASE_URL",
        default_value = "sqlite://idsync.db"
    )]
    pub database_url: String,

    /// File holding the admin API token. Without it (and without IDSYNC_ADMIN_TOKEN),
    /// a token is generated into `.idsync/admin-token` on first start and printed once.
    #[arg(long, env = "IDSYNC_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Base URL IdPs and browsers reach this service at (default `http://<listen>`).
    #[arg(long, env = "IDSYNC_PUBLIC_URL")]
    pub public_url: Option<String>,

    #[command(flatten)]
    pub outbound: super::OutboundArgs,

    /// Serve `/metrics` on this address instead of on `--listen`, so that the
    /// admin and sign-in port does not publish workspace names (the chart does).
    #[arg(long, env = "IDSYNC_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// A client must send a request's headers within this; also how long an
    /// idle keep-alive connection stays open (e.g. 10s).
    #[arg(long, env = "IDSYNC_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: DurationSpec,

    /// A request must be answered within this, its body included (e.g. 30s).
    #[arg(long, env = "IDSYNC_REQUEST_TIMEOUT", default_value = "30s")]
    pub request_timeout: DurationSpec,

    /// Requests handled at once; more are answered 503 with Retry-After.
    #[arg(long, env = "IDSYNC_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Connections open at once; more wait in the listen backlog.
    #[arg(long, env = "IDSYNC_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,

    /// Proxies (CIDRs) whose X-Forwarded-For names the client, e.g. the
    /// ingress controller's pod range. Without it the peer address is the
    /// client, for rate limits and the audit log alike.
    #[arg(
        long,
        env = "IDSYNC_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<String>,

    /// Sign-in requests (start, callbacks, ACS, discovery) per second from one
    /// client address, with bursts of ten times as many; 0 turns it off.
    #[arg(long, env = "IDSYNC_RATE_LIMIT_SIGNIN", default_value_t = 20.0)]
    pub rate_limit_signin: f64,

    /// Failed SCIM-token and admin-token authentications per minute from one
    /// client address (also the burst); past it, 429 until it refills. 0 = off.
    #[arg(long, env = "IDSYNC_RATE_LIMIT_AUTH_FAILURES", default_value_t = 30.0)]
    pub rate_limit_auth_failures: f64,

    /// Invalid session checks per second from one client address, with bursts
    /// of ten times as many (a product's backend checks for every browser). 0 = off.
    #[arg(
        long,
        env = "IDSYNC_RATE_LIMIT_SESSION_FAILURES",
        default_value_t = 50.0
    )]
    pub rate_limit_session_failures: f64,

    /// Audit entries older than this are deleted by a background pruner.
    #[arg(long, env = "IDSYNC_AUDIT_RETENTION", default_value = "400d")]
    pub audit_retention: DurationSpec,

    /// The waits before each retry of a failing webhook endpoint; after the
    /// last one fails, the endpoint is disabled until a replay.
    #[arg(
        long,
        env = "IDSYNC_WEBHOOK_RETRY_SCHEDULE",
        value_delimiter = ',',
        default_value = "5s,5m,30m,2h,5h,10h,10h,2d"
    )]
    pub webhook_retry_schedule: Vec<DurationSpec>,
}

/// Minimum admin token length: shorter tokens are guessable.
const MIN_ADMIN_TOKEN_LEN: usize = 24;

fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the admin token file {}", path.display()))?;
    let token = token.trim().to_string();
    if token.len() < MIN_ADMIN_TOKEN_LEN {
        bail!(
            "the admin token in {} is shorter than {MIN_ADMIN_TOKEN_LEN} characters; use a random token (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    Ok(token)
}

/// Reads the admin token, or generates one on first start.
fn admin_token(args: &ServeArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.admin_token_file {
        return read_token_file(path);
    }
    if let Ok(token) = std::env::var("IDSYNC_ADMIN_TOKEN") {
        let token = token.trim().to_string();
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            bail!("IDSYNC_ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LEN} characters");
        }
        return Ok(token);
    }
    let path = service::default_admin_token_path();
    if path.exists() {
        return read_token_file(&path);
    }
    let mut bytes = [0u8; 32];
    crate::token::random_bytes(&mut bytes)?;
    let token = hex::encode(bytes);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(&path)
        .and_then(|mut f| writeln!(f, "{token}"))
        .with_context(|| format!("writing {}", path.display()))?;
    // Printed once, on the terminal of whoever started the service the first time.
    eprintln!(
        "Generated an admin API token (saved to {}; shown only this once):\n\n    {token}\n",
        path.display()
    );
    Ok(token)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let admin_token = admin_token(&args)?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let mut config = ServeConfig::new(args.listen, args.database_url, admin_token, public_url);
    config.outbound = args.outbound.policy()?;
    config.metrics_listen = args.metrics_listen;
    config.trusted_proxies = TrustedProxies::parse(&args.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
    config.rate_limits = Budgets {
        signin: Budget::per_second(args.rate_limit_signin, args.rate_limit_signin * 10.0),
        credential_failures: Budget::per_minute(
            args.rate_limit_auth_failures,
            args.rate_limit_auth_failures,
        ),
        session_failures: Budget::per_second(
            args.rate_limit_session_failures,
            args.rate_limit_session_failures * 10.0,
        ),
    };
    config.audit_retention = args.audit_retention.as_duration();
    config.webhook_retry = (args.webhook_retry_schedule.iter())
        .map(|wait| wait.as_duration())
        .collect();
    config.limits = Limits {
        header_read_timeout: args.header_read_timeout.as_duration(),
        request_timeout: args.request_timeout.as_duration(),
        max_concurrent_requests: args.max_concurrent_requests,
        max_connections: args.max_connections,
    };
    service::run(config).await
}
