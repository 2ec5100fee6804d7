//! `idsync admin delete`: delete an object, or revoke a SCIM token.

use clap::Args;

use super::{AdminArgs, KindArg, need_workspace};
use crate::admin::ObjectKind;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    kind: KindArg,
    name: String,
    #[arg(long, short = 'w')]
    workspace: Option<String>,
    /// With a workspace: delete everything in it too.
    #[arg(long)]
    cascade: bool,
}

pub async fn run(admin: &AdminArgs, args: &DeleteArgs) -> anyhow::Result<()> {
    let client = admin.client()?;
    let name = &args.name;
    match args.kind.object_kind() {
        None => {
            client
                .revoke_token(need_workspace(&args.workspace)?, name)
                .await?
        }
        Some(ObjectKind::Workspace) => {
            client
                .delete_object(ObjectKind::Workspace, name, name, args.cascade)
                .await?
        }
        Some(kind) => {
            client
                .delete_object(kind, need_workspace(&args.workspace)?, name, false)
                .await?
        }
    }
    eprintln!("deleted {name}");
    Ok(())
}
