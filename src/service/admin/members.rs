//! Members as the workspace sees them now: role, role awaiting approval,
//! effective assignments and groups (`idsync admin members get`).

use super::{AdminError, AdminService, Result};
use crate::admin::MemberView;

impl AdminService {
    /// The principal `who` (a SCIM id, or a user's userName) of `workspace`.
    pub async fn member(&self, workspace: &str, who: &str) -> Result<MemberView> {
        self.require_workspace(workspace).await?;
        let row = self.store.member(workspace, who).await?.ok_or_else(|| {
            AdminError::NotFound(format!("no member {who} in workspace {workspace}"))
        })?;
        let groups = self.store.scim_groups_of(workspace, &row.id).await?;
        Ok(MemberView {
            // Written by the service itself; a row it cannot read shows none.
            assignments: row
                .assignments
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_default(),
            groups: groups.into_iter().map(|(_, name)| name).collect(),
            id: row.id,
            kind: row.kind.as_str().to_string(),
            user_name: row.user_name,
            active: row.active,
            access_revoked_at: row.access_revoked_at.map(super::timestamp),
            role: row.role,
            pending_role: row.pending_role,
        })
    }
}
