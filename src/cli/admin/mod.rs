//! `idsync admin`: a client of the identity service's admin API, one module per
//! subcommand.

mod apply;
mod approvals;
mod audit;
mod delete;
mod events;
mod get;
mod keys;
mod members;
mod output;
mod scim_token;
mod webhooks;
mod workspace;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::admin::{AdminClient, ObjectKind};
pub use output::Output;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of the identity service.
    #[arg(
        long,
        env = "IDSYNC_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    /// File holding the admin token (default `.idsync/admin-token`, where `idsync serve`
    /// writes a generated one).
    #[arg(
        long,
        env = "IDSYNC_ADMIN_TOKEN_FILE",
        value_name = "FILE",
        global = true
    )]
    pub token_file: Option<PathBuf>,

    /// PEM file of CA certificates to trust for the service's TLS certificate.
    #[arg(long, env = "IDSYNC_CA_FILE", value_name = "FILE", global = true)]
    pub ca_file: Option<PathBuf>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,

    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Sync manifests (the same YAML the operator reads) straight to the service.
    /// Idempotent: applying the same files twice changes nothing.
    Apply(apply::ApplyArgs),
    /// Show objects: workspaces, connections, role-mappings or scim-tokens.
    Get(get::GetArgs),
    /// Delete an object (a SCIM token is revoked).
    Delete(delete::DeleteArgs),
    /// Issue, list and revoke SCIM bearer tokens.
    #[command(subcommand, name = "scim-token")]
    ScimToken(scim_token::ScimTokenCommand),
    /// API keys of users and service accounts: issue (shown once), list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Members: role, pending role, effective assignments, groups, and why.
    #[command(subcommand)]
    Members(members::MembersCommand),
    /// Roles waiting for approval, and approving or revoking them.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Workspace ids: free a claim whose owner is gone for good.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCommand),
    /// Read the audit log, newest first.
    Audit(audit::AuditArgs),
    /// A workspace's lifecycle events, oldest first.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Webhook endpoints: where deliveries stand, and replays.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    #[value(alias = "workspace", alias = "ws")]
    Workspaces,
    #[value(alias = "connection", alias = "sso", alias = "ssoconnections")]
    Connections,
    #[value(alias = "role-mapping", alias = "rolemap", alias = "rolemappings")]
    RoleMappings,
    #[value(
        alias = "role-approval",
        alias = "roleapproval",
        alias = "roleapprovals"
    )]
    RoleApprovals,
    #[value(alias = "scim-token", alias = "scimtoken", alias = "scimtokens")]
    ScimTokens,
}

impl KindArg {
    /// The stored object kind; SCIM tokens are not stored objects but credentials
    /// with an API of their own.
    fn object_kind(self) -> Option<ObjectKind> {
        match self {
            KindArg::Workspaces => Some(ObjectKind::Workspace),
            KindArg::Connections => Some(ObjectKind::SsoConnection),
            KindArg::RoleMappings => Some(ObjectKind::RoleMapping),
            KindArg::RoleApprovals => Some(ObjectKind::RoleApproval),
            KindArg::ScimTokens => None,
        }
    }
}

impl AdminArgs {
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        let path = self
            .token_file
            .clone()
            .unwrap_or_else(crate::service::default_admin_token_path);
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading the admin token from {} (pass --token-file or set IDSYNC_ADMIN_TOKEN_FILE)",
                path.display()
            )
        })?;
        let ca = self
            .ca_file
            .as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Ok(AdminClient::new(&self.url, token.trim(), ca.as_deref())?
            .with_actor(format!("cli/{user}")))
    }
}

fn need_workspace(workspace: &Option<String>) -> anyhow::Result<&str> {
    workspace
        .as_deref()
        .context("--workspace is required for this kind")
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match &args.command {
        AdminCommand::Apply(apply) => apply::run(&args, apply).await,
        AdminCommand::Get(get) => get::run(&args, get).await,
        AdminCommand::Delete(delete) => delete::run(&args, delete).await,
        AdminCommand::ScimToken(command) => scim_token::run(&args, command).await,
        AdminCommand::Keys(command) => keys::run(&args, command).await,
        AdminCommand::Approvals(command) => approvals::run(&args, command).await,
        AdminCommand::Events(command) => events::run(&args, command).await,
        AdminCommand::Webhooks(command) => webhooks::run(&args, command).await,
        AdminCommand::Members(command) => members::run(&args, command).await,
        AdminCommand::Workspace(command) => workspace::run(&args, command).await,
        AdminCommand::Audit(audit) => audit::run(&args, audit).await,
    }
}
