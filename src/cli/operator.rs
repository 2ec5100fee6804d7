//! `idsync operator`: its flags, turned into the controller's run options.

use std::net::SocketAddr;

use clap::Args;

use crate::{api::DurationSpec, controller::RunOptions};

#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Address for `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "IDSYNC_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,

    /// How often every resource is compared with the identity service, to correct
    /// drift (e.g. 5m, 30s).
    #[arg(long, env = "IDSYNC_RESYNC", default_value = "5m")]
    pub resync: DurationSpec,

    /// Namespace of the leader-election Lease (default: the in-cluster namespace,
    /// else `default`).
    #[arg(long, env = "IDSYNC_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "IDSYNC_LEASE_NAME", default_value = "idsync-operator")]
    pub lease_name: String,

    /// This replica's identity in the Lease (default: POD_NAME, else hostname and pid).
    #[arg(long, env = "IDSYNC_IDENTITY")]
    pub identity: Option<String>,

    /// Seconds a leader's Lease lasts without renewal; a standby takes over after it.
    #[arg(long, env = "IDSYNC_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,

    /// Reconciles each controller runs at once. Bounds memory and the load on the
    /// apiserver when thousands of resources arrive together.
    #[arg(long, env = "IDSYNC_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Namespaces to watch, comma-separated (default: every namespace). With a
    /// list, the operator lists and watches only there, so namespaced Roles are
    /// enough; `--concurrency` then applies to each namespace.
    #[arg(
        long,
        env = "IDSYNC_WATCH_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS,NS"
    )]
    pub watch_namespaces: Vec<String>,

    #[command(flatten)]
    pub outbound: super::OutboundArgs,

    /// This cluster's name in the claims the identity service keeps on
    /// workspace ids (`kubernetes:<name>:<namespace>/<workspace>:<uid>`). Give each
    /// cluster its own when several share one identity service.
    #[arg(long, env = "IDSYNC_CLUSTER_NAME", default_value = "kubernetes")]
    pub cluster_name: String,

    /// The operator's own namespace, where ClusterIdentityServices' admin
    /// token and key Secrets live (default: the in-cluster namespace, else the
    /// kubeconfig context's).
    #[arg(long, env = "IDSYNC_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
}

impl OperatorArgs {
    pub fn into_options(self) -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            metrics_addr: self.metrics_addr,
            lease_namespace: self.lease_namespace,
            lease_name: self.lease_name,
            identity: self.identity,
            lease_duration: self.lease_duration,
            watch_namespaces: self.watch_namespaces,
            resync: self.resync.as_duration(),
            concurrency: self.concurrency,
            outbound: self.outbound.policy()?,
            cluster_name: self.cluster_name,
            operator_namespace: self.operator_namespace,
        })
    }
}

pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    crate::controller::run(args.into_options()?).await
}
