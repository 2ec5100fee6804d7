//! `idsync serve`.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::Args;

use crate::service::{self, ServeConfig};

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
    service::run(ServeConfig {
        listen: args.listen,
        database_url: args.database_url,
        admin_token,
        public_url,
    })
    .await
}
