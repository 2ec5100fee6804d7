//! `idsync admin keys`: API keys of users and service accounts.

use clap::Subcommand;

use super::AdminArgs;
use super::output::{Output, print, table};
use crate::admin::{ApiKeyRequest, ApiKeyView};
use crate::api::DurationSpec;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a key for a user or service account and print it once.
    Issue {
        #[arg(long, short = 'w')]
        workspace: String,
        /// The user (SCIM id or userName) or service account (SCIM id).
        #[arg(long)]
        principal: String,
        /// What the key is for (shown in listings and the audit log).
        #[arg(long, default_value = "manual")]
        name: String,
        /// Expire after this long (e.g. 90d); default never.
        #[arg(long)]
        expires_in: Option<DurationSpec>,
    },
    /// List keys (ids and times, never values).
    List {
        #[arg(long, short = 'w')]
        workspace: String,
        /// Only this principal's keys.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        #[arg(long, short = 'w')]
        workspace: String,
        id: String,
    },
}

pub async fn run(admin: &AdminArgs, command: &KeysCommand) -> anyhow::Result<()> {
    let client = admin.client()?;
    match command {
        KeysCommand::Issue {
            workspace,
            principal,
            name,
            expires_in,
        } => {
            let expires_at = expires_in.map(|d| {
                jiff::Timestamp::now() + jiff::SignedDuration::from_secs(d.as_secs() as i64)
            });
            let req = ApiKeyRequest {
                principal: Some(principal.clone()),
                name: name.clone(),
                expires_at,
            };
            let issued = client.issue_api_key(workspace, &req).await?;
            eprintln!(
                "Issued API key {} for {} in workspace {workspace}. It is shown only this once; the service keeps only its hash.",
                issued.view.id, issued.view.principal_id
            );
            println!("{}", issued.key);
            Ok(())
        }
        KeysCommand::List {
            workspace,
            principal,
        } => print_keys(
            admin.output,
            &client
                .list_api_keys(workspace, principal.as_deref())
                .await?,
        ),
        KeysCommand::Revoke { workspace, id } => {
            client.revoke_api_key(workspace, id).await?;
            eprintln!("revoked API key {id}");
            Ok(())
        }
    }
}

fn print_keys(output: Output, keys: &[ApiKeyView]) -> anyhow::Result<()> {
    print(output, &keys, || {
        let rows = keys.iter().map(|k| {
            vec![
                k.id.clone(),
                k.principal_id.clone(),
                k.name.clone(),
                k.valid.to_string(),
                k.created_at.to_string(),
                k.expires_at
                    .map_or_else(|| "never".into(), |t| t.to_string()),
                k.last_used_at.map_or_else(|| "-".into(), |t| t.to_string()),
            ]
        });
        table(
            &[
                "ID",
                "PRINCIPAL",
                "NAME",
                "VALID",
                "CREATED",
                "EXPIRES",
                "LAST USED",
            ],
            rows.collect(),
        )
    })
}
