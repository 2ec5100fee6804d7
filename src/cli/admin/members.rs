//! `idsync admin members`: what the service holds about a member now.

use clap::Subcommand;

use super::AdminArgs;
use super::output::{print, table};
use crate::admin::MemberExplanation;

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
    /// Why a member has the role and access they have: their groups, what
    /// their last sign-in asserted, the rule that decided (or the default
    /// that applied), approvals, access groups.
    Explain {
        #[arg(long, short = 'w')]
        workspace: String,
        /// SCIM id, or a user's userName (email).
        #[arg(long)]
        user: String,
    },
}

pub async fn run(admin: &AdminArgs, command: &MembersCommand) -> anyhow::Result<()> {
    match command {
        MembersCommand::Explain { workspace, user } => {
            let e = admin.client()?.explain_member(workspace, user).await?;
            print(admin.output, &e, || explanation(&e))
        }
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
                    match m.access_revoked_at {
                        Some(at) => format!("revoked {at}"),
                        None => "yes".into(),
                    },
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
                    "ACCESS",
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

/// An explanation as lines a person reads top to bottom.
fn explanation(e: &MemberExplanation) -> String {
    let m = &e.member;
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let mut lines = vec![
        format!("member:       {} ({}, {})", m.user_name, m.kind, m.id),
        format!("active:       {} (as the IdP set it)", m.active),
        format!("access:       {}", e.access),
        format!("role:         {}", or_none(&m.role)),
    ];
    if let Some(pending) = &m.pending_role {
        lines.push(format!("waiting for:  {pending} (needs an approval)"));
    }
    let mapping = e.role_mapping.as_deref().unwrap_or("no RoleMapping");
    lines.push(format!(
        "decided by:   {} of {mapping}, giving {}",
        e.decided_by,
        or_none(&e.resolved_role)
    ));
    if let Some(rule) = &e.rule {
        lines.push(format!("rule:         {rule}"));
    }
    lines.push(format!("groups:       {}", m.groups.join(", ")));
    match &e.last_sign_in {
        Some(a) => {
            lines.push(format!("last sign-in: through {}", a.connection));
            lines.push(format!("  groups:     {}", a.groups.join(", ")));
            for (claim, values) in &a.claims {
                lines.push(format!("  {claim}: {}", values.join(", ")));
            }
        }
        None => lines.push("last sign-in: none kept".into()),
    }
    let approvals = if e.approvals.is_empty() {
        "none".to_string()
    } else {
        e.approvals.join(", ")
    };
    lines.push(format!("approvals:    {approvals}"));
    let assignments: Vec<String> = m
        .assignments
        .iter()
        .map(|a| format!("{}={}", a.kind, a.value))
        .collect();
    lines.push(format!("assignments:  {}", assignments.join(", ")));
    lines.join("\n") + "\n"
}
