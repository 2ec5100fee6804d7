//! The `idsync` command line.

mod admin;
mod operator;
mod roles;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// idsync: GitOps for enterprise identity.
///
/// Declare SSO connections, SCIM tokens, role mappings and workspace policy as
/// Kubernetes resources; the operator syncs them to the identity service, which
/// serves SCIM to your IdP and signs people in.
#[derive(Debug, Parser)]
#[command(
    name = "idsync",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log filter, e.g. `info` or `idsync=debug,kube=warn` (also RUST_LOG).
    #[arg(long, global = true, env = "IDSYNC_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, global = true, env = "IDSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the identity service: admin API, SCIM server, sign-in, audit log.
    Serve(serve::ServeArgs),
    /// Run the Kubernetes operator that syncs custom resources to the identity service.
    Operator(operator::OperatorArgs),
    /// Print the CustomResourceDefinitions, or write one file per kind.
    Crd {
        /// Directory to write `<plural>.idsync.dev.yaml` files into (default: print to stdout).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Helm chart directory whose `templates/crds/` to write (e.g. charts/idsync).
        #[arg(long, value_name = "CHART_DIR", conflicts_with = "out")]
        chart: Option<PathBuf>,
    },
    /// Role mapping tools.
    #[command(subcommand)]
    Roles(roles::RolesCommand),
    /// Talk to an identity service's admin API without Kubernetes.
    Admin(admin::AdminArgs),
}

/// Which addresses requests to URLs others chose may reach (serve and operator).
#[derive(Debug, Clone, clap::Args)]
pub struct OutboundArgs {
    /// Address ranges outbound requests may reach although they are link-local
    /// or a cloud metadata address (refused by default), e.g. `169.254.10.0/24`.
    /// Repeat the flag or separate with commas.
    #[arg(
        long,
        env = "IDSYNC_OUTBOUND_ALLOW",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub outbound_allow: Vec<String>,
}

impl OutboundArgs {
    pub fn policy(&self) -> anyhow::Result<crate::outbound::OutboundPolicy> {
        crate::outbound::OutboundPolicy::with_allowed(&self.outbound_allow)
            .map_err(|e| anyhow::anyhow!("--outbound-allow: {e}"))
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Operator(args) => operator::run(args).await,
        Command::Crd { out, chart } => {
            match (out, chart) {
                (Some(dir), _) => {
                    for name in crate::crdgen::write_dir(&dir)? {
                        eprintln!("wrote {}", dir.join(name).display());
                    }
                }
                (None, Some(chart)) => {
                    for name in crate::crdgen::write_chart(&chart)? {
                        eprintln!("wrote {}", chart.join(name).display());
                    }
                }
                (None, None) => print!("{}", crate::crdgen::render_all()?),
            }
            Ok(())
        }
        Command::Roles(cmd) => roles::run(cmd),
        Command::Admin(args) => admin::run(args).await,
    }
}

/// Sets up logging to stderr.
pub fn init_tracing(filter: &str, format: LogFormat) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
