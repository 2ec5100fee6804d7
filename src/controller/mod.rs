//! The operator: one controller per kind, syncing custom resources to the identity
//! service.

use clap::Args;

#[derive(Debug, Args)]
pub struct OperatorArgs {}

pub async fn run(_args: OperatorArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let version = client.apiserver_version().await?;
    tracing::info!(version = %version.git_version, "connected to the Kubernetes API");
    crate::service::shutdown_signal().await;
    Ok(())
}
