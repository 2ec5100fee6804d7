//! What approvals of elevated roles read: the people an approval names by
//! email, and the roles that wait for one.

use std::collections::{HashMap, HashSet};

use super::{Result, ScimTx, Store, reader::rows_for_ids, scim::kind_of};
use crate::scim::schema::ResourceKind;

/// A member whose role waits for approval, as the listing reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub id: String,
    pub kind: ResourceKind,
    pub user_name: String,
    pub role: Option<String>,
    pub pending_role: String,
    pub pending_since: Option<i64>,
}

/// Most pending requests one listing answers.
pub const MAX_PENDING_LISTED: i64 = 1000;

impl ScimTx {
    /// Claims the handling of an approval's lapse: true for the one write
    /// that records it first, false when it is handled already.
    pub async fn claim_lapse(
        &mut self,
        workspace: &str,
        name: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<bool> {
        let claimed = self
            .tx
            .fetch_optional(
                "INSERT INTO role_approval_lapses (workspace, name, fingerprint, lapsed_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING lapsed_at",
                &[
                    workspace.into(),
                    name.into(),
                    fingerprint.into(),
                    now.into(),
                ],
                |row| row.int("lapsed_at"),
            )
            .await?;
        Ok(claimed.is_some())
    }

    /// The live users each of `emails` (lower-cased) names, by userName only:
    /// other emails of a user are attributes an IdP may let its users edit,
    /// and an approval must not follow an address someone added to their
    /// own profile.
    pub async fn users_by_email(
        &mut self,
        workspace: &str,
        emails: &[String],
    ) -> Result<HashMap<String, Vec<String>>> {
        let sql = |keys: &str| {
            format!(
                "SELECT r.id, r.name_key AS email FROM scim_resources r \
                 WHERE r.workspace = $1 AND r.kind = 'User' AND r.deleted_at IS NULL \
                 AND r.name_key IN ({keys})"
            )
        };
        let rows = rows_for_ids(&mut self.tx, workspace.into(), emails, sql, |row| {
            Ok((row.text("email")?, row.text("id")?))
        })
        .await?;
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for (email, id) in rows {
            found.entry(email).or_default().push(id);
        }
        Ok(found)
    }
}

impl Store {
    /// (workspace, name, fingerprint) of every approval whose lapse is handled.
    pub async fn handled_lapses(&self) -> Result<HashSet<(String, String, String)>> {
        let rows = super::args::fetch_sqlx(
            &self.pool,
            "SELECT workspace, name, fingerprint FROM role_approval_lapses",
            &[],
            |row| {
                Ok((
                    row.text("workspace")?,
                    row.text("name")?,
                    row.text("fingerprint")?,
                ))
            },
        )
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Forgets the handled lapses of approvals that are gone or were
    /// changed since (a changed approval has another fingerprint, and its
    /// own lapse to handle); answers how many.
    pub async fn prune_lapses(&self) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = tx
            .execute(
                "DELETE FROM role_approval_lapses WHERE NOT EXISTS (SELECT 1 FROM objects o \
                 WHERE o.kind = 'role-approval' AND o.workspace = role_approval_lapses.workspace \
                 AND o.name = role_approval_lapses.name \
                 AND o.fingerprint = role_approval_lapses.fingerprint)",
                &[],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The members of `workspace` whose role waits for approval, longest
    /// waiting first.
    pub async fn pending_approvals(&self, workspace: &str) -> Result<Vec<PendingRow>> {
        // The partial index on (workspace, pending_since) bounds it.
        self.read_all(
            &format!(
                "SELECT id, kind, name_key, role, pending_role, pending_since FROM scim_resources \
                 WHERE workspace = $1 AND pending_role IS NOT NULL AND deleted_at IS NULL \
                 ORDER BY pending_since, id LIMIT {MAX_PENDING_LISTED}"
            ),
            &[workspace.into()],
            |row| {
                Ok(PendingRow {
                    id: row.text("id")?,
                    kind: kind_of(&row.text("kind")?),
                    user_name: row.text("name_key")?,
                    role: row.opt_text("role")?,
                    pending_role: row.text("pending_role")?,
                    pending_since: row.opt_int("pending_since")?,
                })
            },
        )
        .await
    }

    /// How many members wait for an approval in each workspace, none
    /// included (for the gauge: a workspace with none shows 0, not nothing).
    pub async fn pending_approval_counts(&self) -> Result<Vec<(String, i64)>> {
        super::args::fetch_sqlx(
            &self.pool,
            "SELECT w.workspace, COUNT(r.pk) AS n FROM objects w \
             LEFT JOIN scim_resources r ON r.workspace = w.workspace \
             AND r.pending_role IS NOT NULL AND r.deleted_at IS NULL \
             WHERE w.kind = 'workspace' GROUP BY w.workspace",
            &[],
            |row| Ok((row.text("workspace")?, row.int("n")?)),
        )
        .await
    }
}
