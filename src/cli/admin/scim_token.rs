//! `idsync admin scim-token`: issue, list and revoke SCIM bearer tokens.

use clap::Subcommand;

use super::AdminArgs;
use super::output::{Output, print, table};
use crate::admin::{AdminClient, ScimTokenDoc, TokenView};
use crate::api::{DurationSpec, ScimAuthentication};
use crate::token::GeneratedToken;

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
        /// An HTTP Basic credential (client ID and client secret) for IdPs
        /// that ask for those instead of a bearer token.
        #[arg(long)]
        basic: bool,
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

pub async fn run(admin: &AdminArgs, command: &ScimTokenCommand) -> anyhow::Result<()> {
    let client = admin.client()?;
    match command {
        ScimTokenCommand::Issue {
            workspace,
            name,
            expires_in,
            basic,
        } => {
            let scheme = match basic {
                true => ScimAuthentication::Basic,
                false => ScimAuthentication::Bearer,
            };
            let (token, view) = issue_token(&client, workspace, name, *expires_in, scheme).await?;
            eprintln!(
                "Issued SCIM {} credential {} for workspace {workspace}. It is shown only this once; the service keeps only its hash.\nSCIM base URL: {}",
                scheme.as_str(),
                view.id,
                view.scim_base_url
            );
            match scheme {
                ScimAuthentication::Bearer => println!("{}", token.expose()),
                ScimAuthentication::Basic => {
                    println!("client id: {}\nclient secret: {}", token.id, token.expose())
                }
            }
            Ok(())
        }
        ScimTokenCommand::List { workspace } => {
            print_tokens(admin.output, &client.list_tokens(workspace).await?)
        }
        ScimTokenCommand::Revoke { workspace, id } => {
            client.revoke_token(workspace, id).await?;
            eprintln!("revoked SCIM token {id}");
            Ok(())
        }
    }
}

/// Issues a token: generated here, only its hash goes to the service.
pub async fn issue_token(
    client: &AdminClient,
    workspace: &str,
    name: &str,
    expires_in: Option<DurationSpec>,
    scheme: ScimAuthentication,
) -> anyhow::Result<(GeneratedToken, TokenView)> {
    let token = crate::token::generate()?;
    let expires_at = expires_in
        .map(|d| jiff::Timestamp::now() + jiff::SignedDuration::from_secs(d.as_secs() as i64));
    let doc = ScimTokenDoc {
        name: name.to_string(),
        authentication: Some(scheme),
        sha256: Some(token.hash()),
        expires_at,
    };
    let view = client.put_token(workspace, &token.id, &doc).await?;
    Ok((token, view))
}

pub fn print_tokens(output: Output, tokens: &[TokenView]) -> anyhow::Result<()> {
    print(output, &tokens, || {
        let rows = tokens.iter().map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.valid.to_string(),
                t.created_at.to_string(),
                t.expires_at
                    .map_or_else(|| "never".into(), |t| t.to_string()),
                t.last_used_at.map_or_else(|| "-".into(), |t| t.to_string()),
            ]
        });
        table(
            &["ID", "NAME", "VALID", "CREATED", "EXPIRES", "LAST USED"],
            rows.collect(),
        )
    })
}
