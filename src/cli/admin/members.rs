//! `idsync admin members`: what the service holds about a member now.

use clap::Subcommand;

use super::AdminArgs;
use super::output::{print, table};

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// A member's role, role awaiting approval, effective role assignments
    /// and groups, by SCIM id or userName.
    Get {
        #[arg(long, short = 'w')]
        workspace: String,
        /// SCIM id, or a user's userName (email).
        member: String,
    },
}

pub async fn run(admin: &AdminArgs, command: &MembersCommand) -> anyhow::Result<()> {
    match command {
        MembersCommand::Get { workspace, member } => {
            let m = admin.client()?.member(workspace, member).await?;
            print(admin.output, &m, || {
                let assignments: Vec<String> = m
                    .assignments
                    .iter()
                    .map(|a| format!("{}={}", a.kind, a.value))
                    .collect();
                let row = vec![
                    m.id.clone(),
                    m.kind.clone(),
                    m.user_name.clone(),
                    m.active.to_string(),
                    m.role.clone().unwrap_or_else(|| "-".into()),
                    m.pending_role.clone().unwrap_or_else(|| "-".into()),
                    assignments.join(","),
                    m.groups.join(","),
                ];
                let header = [
                    "ID",
                    "TYPE",
                    "NAME",
                    "ACTIVE",
                    "ROLE",
                    "PENDING",
                    "ASSIGNMENTS",
                    "GROUPS",
                ];
                table(&header, vec![row])
            })
        }
    }
}
