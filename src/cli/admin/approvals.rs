//! `idsync admin approvals`: roles that wait for an administrator's approval
//! (`policy.approvalRequiredRoles`), and the approvals that release them, for
//! installs without a cluster (a cluster declares `RoleApproval`s).

use clap::Subcommand;
use sha2::{Digest, Sha256};

use super::AdminArgs;
use super::output::{print, table};
use crate::admin::{ObjectKind, ObjectView, RoleApprovalDoc};
use crate::api::DurationSpec;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// What waits (who, which role, which rule asked, since when), then the
    /// approvals in force.
    List {
        #[arg(long, short = 'w')]
        workspace: String,
    },
    /// Approve a role for a person: it applies at once when the mapping gives
    /// it to them.
    Approve {
        #[arg(long, short = 'w')]
        workspace: String,
        /// The person: an email (their userName) or a SCIM id.
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
        /// Lapse after this long (e.g. 30d); default never.
        #[arg(long)]
        expires_in: Option<DurationSpec>,
        /// Why (a ticket), for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revoke an approval given with `approve` (the person is demoted to
    /// what the mapping gives without it).
    Revoke {
        #[arg(long, short = 'w')]
        workspace: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
    },
}

/// The name `approve` gives an approval: the same person and role always
/// name the same object, so approving again updates it and `revoke` finds it.
fn approval_name(user: &str, role: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{role}", user.to_lowercase()));
    // Role names may hold `_`, object names may not.
    format!(
        "cli-{}-{}",
        role.replace('_', "-"),
        &hex::encode(digest)[..12]
    )
}

pub async fn run(admin: &AdminArgs, command: &ApprovalsCommand) -> anyhow::Result<()> {
    let client = admin.client()?;
    match command {
        ApprovalsCommand::List { workspace } => {
            let pending = client.pending_approvals(workspace).await?;
            let approvals = client
                .list_objects(ObjectKind::RoleApproval, Some(workspace))
                .await?;
            let both = serde_json::json!({"pending": pending, "approvals": approvals});
            print(admin.output, &both, || {
                let rows = pending
                    .iter()
                    .map(|p| {
                        vec![
                            p.user_name.clone(),
                            p.role.clone(),
                            p.current_role.clone().unwrap_or_else(|| "-".into()),
                            p.decided_by.clone(),
                            p.since.map_or_else(|| "-".into(), |t| t.to_string()),
                        ]
                    })
                    .collect();
                let header = ["PENDING FOR", "ROLE", "HOLDS NOW", "ASKED BY", "SINCE"];
                let mut out = table(&header, rows);
                out.push('\n');
                out.push_str(&approvals_table(&approvals));
                out
            })
        }
        ApprovalsCommand::Approve {
            workspace,
            user,
            role,
            expires_in,
            reason,
        } => {
            let by_email = user.contains('@');
            let doc = RoleApprovalDoc {
                email: by_email.then(|| user.to_lowercase()),
                scim_id: (!by_email).then(|| user.clone()),
                role: role.clone(),
                expires_at: expires_in.map(|d| {
                    jiff::Timestamp::now() + jiff::SignedDuration::from_secs(d.as_secs() as i64)
                }),
                reason: reason.clone(),
            };
            let name = approval_name(user, role);
            client
                .put_object(ObjectKind::RoleApproval, workspace, &name, &doc)
                .await?;
            eprintln!("approved {role} for {user} in workspace {workspace} ({name})");
            Ok(())
        }
        ApprovalsCommand::Revoke {
            workspace,
            user,
            role,
        } => {
            let name = approval_name(user, role);
            client
                .delete_object(ObjectKind::RoleApproval, workspace, &name, false)
                .await?;
            eprintln!("revoked the approval of {role} for {user} in workspace {workspace}");
            Ok(())
        }
    }
}

fn approvals_table(approvals: &[ObjectView]) -> String {
    let rows = approvals
        .iter()
        .map(|a| {
            let field = |k: &str| a.spec[k].as_str().unwrap_or("-").to_string();
            let person = match a.spec["email"].as_str() {
                Some(email) => email.to_string(),
                None => field("scimId"),
            };
            vec![
                a.name.clone(),
                person,
                field("role"),
                field("expiresAt"),
                field("reason"),
            ]
        })
        .collect();
    table(&["APPROVAL", "PERSON", "ROLE", "EXPIRES", "REASON"], rows)
}
