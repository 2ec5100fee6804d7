//! `idsync admin workspace`: workspace ids and their claims.

use clap::Subcommand;

use super::AdminArgs;

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Release the claim on a workspace id (audited), so another Workspace
    /// resource or `admin apply --owner` may claim it. The workspace itself
    /// and everything in it stay.
    Release { id: String },
}

pub async fn run(admin: &AdminArgs, command: &WorkspaceCommand) -> anyhow::Result<()> {
    match command {
        WorkspaceCommand::Release { id } => {
            if admin.client()?.release_workspace(id).await? {
                eprintln!("released the claim on workspace {id}");
            } else {
                eprintln!("workspace {id} was not claimed");
            }
            Ok(())
        }
    }
}
