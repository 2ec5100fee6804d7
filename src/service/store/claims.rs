//! Who owns each workspace id (see migration 7).

use super::{AuditEntry, Result, Store, audit};

impl Store {
    /// The claimant that owns a workspace id, if any.
    pub async fn workspace_claimant(&self, workspace: &str) -> Result<Option<String>> {
        self.read_optional(
            "SELECT claimant FROM workspace_claims WHERE workspace = $1",
            &[workspace.into()],
            |row| row.text("claimant"),
        )
        .await
    }

    /// Claims a workspace id for `claimant` unless someone holds it; answers
    /// the owner afterwards (the caller, when it won).
    pub async fn claim_workspace(
        &self,
        workspace: &str,
        claimant: &str,
        now: i64,
    ) -> Result<String> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "INSERT INTO workspace_claims (workspace, claimant, claimed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (workspace) DO NOTHING",
            &[workspace.into(), claimant.into(), now.into()],
        )
        .await?;
        let owner = tx
            .fetch_one(
                "SELECT claimant FROM workspace_claims WHERE workspace = $1",
                &[workspace.into()],
                |row| row.text("claimant"),
            )
            .await?;
        tx.commit().await?;
        Ok(owner)
    }

    /// Frees a workspace id (with an audit entry); answers whether it was held.
    pub async fn release_workspace(
        &self,
        workspace: &str,
        entry: &AuditEntry,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let released = tx
            .execute(
                "DELETE FROM workspace_claims WHERE workspace = $1",
                &[workspace.into()],
            )
            .await?;
        if released > 0 {
            audit::insert(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(released > 0)
    }
}
