//! `idsync admin`: a client of the identity service's admin API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::admin::{AdminClient, ScimTokenDoc};
use crate::api::DurationSpec;
use crate::service::store::ObjectKind;

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

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Sync manifests (the same YAML the operator reads) straight to the service.
    /// Idempotent: applying the same files twice changes nothing.
    Apply(super::apply::ApplyArgs),
    /// Show objects: workspaces, connections, role-mappings or scim-tokens.
    Get {
        kind: KindArg,
        /// Name; without it, list.
        name: Option<String>,
        /// Workspace (required for everything but workspaces).
        #[arg(long, short = 'w')]
        workspace: Option<String>,
    },
    /// Delete an object (a SCIM token is revoked).
    Delete {
        kind: KindArg,
        name: String,
        #[arg(long, short = 'w')]
        workspace: Option<String>,
        /// With a workspace: delete everything in it too.
        #[arg(long)]
        cascade: bool,
    },
    /// Issue, list and revoke SCIM bearer tokens.
    #[command(subcommand, name = "scim-token")]
    ScimToken(ScimTokenCommand),
    /// Workspace ids: free a claim whose owner is gone for good.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Read the audit log, newest first.
    Audit {
        #[arg(long, short = 'w')]
        workspace: Option<String>,
        /// Only this kind (workspace, sso-connection, role-mapping, scim-token).
        #[arg(long)]
        kind: Option<String>,
        /// Only this action (e.g. workspace.applied, scim-token.revoked).
        #[arg(long)]
        action: Option<String>,
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Release the claim on a workspace id (audited), so another Workspace
    /// resource or `admin apply --owner` may claim it. The workspace itself
    /// and everything in it stay.
    Release { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ScimTokenCommand {
    /// Generate a token, register its hash, and print the token once.
    Issue {
        #[arg(long, short = 'w')]
        workspace: String,
        /// Name of the credential (e.g. the IdP it is for).
        #[arg(long, default_value = "manual")]
        name: String,
        /// Expire after this long (e.g. 90d); default never.
        #[arg(long)]
        expires_in: Option<DurationSpec>,
    },
    /// List a workspace's tokens (ids and times, never values).
    List {
        #[arg(long, short = 'w')]
        workspace: String,
    },
    /// Revoke a token by id.
    Revoke {
        #[arg(long, short = 'w')]
        workspace: String,
        id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    #[value(alias = "workspace", alias = "ws")]
    Workspaces,
    #[value(alias = "connection", alias = "sso", alias = "ssoconnections")]
    Connections,
    #[value(alias = "role-mapping", alias = "rolemap", alias = "rolemappings")]
    RoleMappings,
    #[value(alias = "scim-token", alias = "scimtoken", alias = "scimtokens")]
    ScimTokens,
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

pub fn print<T: Serialize>(
    output: Output,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(value)?),
        Output::Table => print!("{}", table()),
    }
    Ok(())
}

/// Left-aligned columns.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("   ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row);
    }
    out
}

fn need_workspace(workspace: &Option<String>) -> anyhow::Result<&str> {
    workspace
        .as_deref()
        .context("--workspace is required for this kind")
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let output = args.output;
    match &args.command {
        AdminCommand::Apply(apply) => super::apply::run(&args, apply).await,
        AdminCommand::Get {
            kind,
            name,
            workspace,
        } => {
            let client = args.client()?;
            if *kind == KindArg::ScimTokens {
                let ws = need_workspace(workspace)?;
                let mut tokens = client.list_tokens(ws).await?;
                if let Some(id) = name {
                    tokens.retain(|t| &t.id == id);
                    if tokens.is_empty() {
                        bail!("no SCIM token {id} in workspace {ws}");
                    }
                }
                return print_tokens(output, &tokens);
            }
            let kind = object_kind(*kind);
            let objects = match (kind, name) {
                (ObjectKind::Workspace, Some(n)) => {
                    client.get_object(kind, n, n).await?.into_iter().collect()
                }
                (_, Some(n)) => client
                    .get_object(kind, need_workspace(workspace)?, n)
                    .await?
                    .into_iter()
                    .collect(),
                (ObjectKind::Workspace, None) => client.list_objects(kind, None).await?,
                (_, None) => {
                    client
                        .list_objects(kind, Some(need_workspace(workspace)?))
                        .await?
                }
            };
            if let Some(n) = name
                && objects.is_empty()
            {
                bail!("{} {n} not found", kind.as_str());
            }
            let single = name.is_some();
            print(
                output,
                &if single {
                    serde_json::to_value(&objects[0])?
                } else {
                    serde_json::to_value(&objects)?
                },
                || {
                    table(
                        &["WORKSPACE", "NAME", "FINGERPRINT", "UPDATED"],
                        objects
                            .iter()
                            .map(|o| {
                                vec![
                                    o.workspace.clone(),
                                    o.name.clone(),
                                    o.fingerprint[..19.min(o.fingerprint.len())].to_string(),
                                    o.updated_at.clone(),
                                ]
                            })
                            .collect(),
                    )
                },
            )
        }
        AdminCommand::Delete {
            kind,
            name,
            workspace,
            cascade,
        } => {
            let client = args.client()?;
            match kind {
                KindArg::ScimTokens => {
                    client
                        .revoke_token(need_workspace(workspace)?, name)
                        .await?
                }
                KindArg::Workspaces => {
                    client
                        .delete_object(ObjectKind::Workspace, name, name, *cascade)
                        .await?
                }
                other => {
                    client
                        .delete_object(object_kind(*other), need_workspace(workspace)?, name, false)
                        .await?
                }
            }
            eprintln!("deleted {name}");
            Ok(())
        }
        AdminCommand::ScimToken(cmd) => scim_token(&args, cmd).await,
        AdminCommand::Workspace(WorkspaceCommand::Release { id }) => {
            let released = args.client()?.release_workspace(id).await?;
            if released {
                eprintln!("released the claim on workspace {id}");
            } else {
                eprintln!("workspace {id} was not claimed");
            }
            Ok(())
        }
        AdminCommand::Audit {
            workspace,
            kind,
            action,
            since,
            limit,
        } => {
            let client = args.client()?;
            let mut query = vec![format!("limit={limit}")];
            for (k, v) in [
                ("workspace", workspace),
                ("kind", kind),
                ("action", action),
                ("since", since),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", urlencode(v)));
                }
            }
            let records = client.audit(&query.join("&")).await?;
            print(output, &records, || {
                table(
                    &["TIME", "WORKSPACE", "ACTOR", "ACTION", "NAME"],
                    records
                        .iter()
                        .map(|r| {
                            vec![
                                r.at.clone(),
                                r.workspace.clone().unwrap_or_default(),
                                r.actor.clone(),
                                r.action.clone(),
                                r.name.clone().unwrap_or_default(),
                            ]
                        })
                        .collect(),
                )
            })
        }
    }
}

fn object_kind(kind: KindArg) -> ObjectKind {
    match kind {
        KindArg::Workspaces => ObjectKind::Workspace,
        KindArg::Connections => ObjectKind::SsoConnection,
        KindArg::RoleMappings | KindArg::ScimTokens => ObjectKind::RoleMapping,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_tokens(output: Output, tokens: &[crate::admin::TokenView]) -> anyhow::Result<()> {
    print(output, &tokens, || {
        table(
            &["ID", "NAME", "VALID", "CREATED", "EXPIRES", "LAST USED"],
            tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.name.clone(),
                        t.valid.to_string(),
                        t.created_at.clone(),
                        t.expires_at.clone().unwrap_or_else(|| "never".into()),
                        t.last_used_at.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect(),
        )
    })
}

/// Issues a token: generated here, only its hash goes to the service.
pub async fn issue_token(
    client: &AdminClient,
    workspace: &str,
    name: &str,
    expires_in: Option<DurationSpec>,
) -> anyhow::Result<(crate::token::GeneratedToken, crate::admin::TokenView)> {
    let token = crate::token::generate()?;
    let expires_at = expires_in.map(|d| {
        (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(d.as_secs() as i64)).to_string()
    });
    let view = client
        .put_token(
            workspace,
            &token.id,
            &ScimTokenDoc {
                name: name.to_string(),
                sha256: Some(token.hash()),
                expires_at,
            },
        )
        .await?;
    Ok((token, view))
}

async fn scim_token(args: &AdminArgs, cmd: &ScimTokenCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    match cmd {
        ScimTokenCommand::Issue {
            workspace,
            name,
            expires_in,
        } => {
            let (token, view) = issue_token(&client, workspace, name, *expires_in).await?;
            eprintln!(
                "Issued SCIM token {} for workspace {workspace}. It is shown only this once; the service keeps only its hash.\nSCIM base URL: {}",
                view.id, view.scim_base_url
            );
            println!("{}", token.expose());
            Ok(())
        }
        ScimTokenCommand::List { workspace } => {
            print_tokens(args.output, &client.list_tokens(workspace).await?)
        }
        ScimTokenCommand::Revoke { workspace, id } => {
            client.revoke_token(workspace, id).await?;
            eprintln!("revoked SCIM token {id}");
            Ok(())
        }
    }
}
