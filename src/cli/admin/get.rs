//! `idsync admin get`: show one object or list them.

use anyhow::bail;
use clap::Args;

use super::output::{print, table};
use super::scim_token::print_tokens;
use super::{AdminArgs, KindArg, need_workspace};
use crate::admin::ObjectKind;

#[derive(Debug, Args)]
pub struct GetArgs {
    kind: KindArg,
    /// Name; without it, list.
    name: Option<String>,
    /// Workspace (required for everything but workspaces).
    #[arg(long, short = 'w')]
    workspace: Option<String>,
}

pub async fn run(admin: &AdminArgs, args: &GetArgs) -> anyhow::Result<()> {
    let client = admin.client()?;
    let Some(kind) = args.kind.object_kind() else {
        let ws = need_workspace(&args.workspace)?;
        let mut tokens = client.list_tokens(ws).await?;
        if let Some(id) = &args.name {
            tokens.retain(|t| &t.id == id);
            if tokens.is_empty() {
                bail!("no SCIM token {id} in workspace {ws}");
            }
        }
        return print_tokens(admin.output, &tokens);
    };
    // A workspace is its own workspace; everything else needs one named.
    let workspace = match (kind, &args.name) {
        (ObjectKind::Workspace, name) => name.as_deref(),
        (_, _) => Some(need_workspace(&args.workspace)?),
    };
    let objects = match (&args.name, workspace) {
        (Some(name), Some(ws)) => client
            .get_object(kind, ws, name)
            .await?
            .into_iter()
            .collect(),
        _ => client.list_objects(kind, workspace).await?,
    };
    let value = match (&args.name, objects.first()) {
        (Some(name), None) => bail!("{} {name} not found", kind.as_str()),
        (Some(_), Some(one)) => serde_json::to_value(one)?,
        (None, _) => serde_json::to_value(&objects)?,
    };
    print(admin.output, &value, || {
        let rows = objects.iter().map(|o| {
            vec![
                o.workspace.clone(),
                o.name.clone(),
                o.fingerprint.chars().take(19).collect(),
                o.updated_at.to_string(),
            ]
        });
        table(
            &["WORKSPACE", "NAME", "FINGERPRINT", "UPDATED"],
            rows.collect(),
        )
    })
}
