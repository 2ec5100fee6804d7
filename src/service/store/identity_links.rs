//! Which IdP subject signs in as which user (see migration 6): the binding a
//! later sign-in is matched by before any email.

use super::{AuditEntry, Result, Store, audit, columns::Columns};

/// A user found for a sign-in, with whether they may sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedUser {
    pub id: String,
    pub active: bool,
    /// Deleted through SCIM (soft delete).
    pub deleted: bool,
}

fn linked_user(row: &dyn Columns) -> Result<LinkedUser> {
    Ok(LinkedUser {
        id: row.text("id")?,
        active: row.int("active")? != 0,
        deleted: row.opt_int("deleted_at")?.is_some(),
    })
}

impl Store {
    /// The user a connection's subject is bound to.
    pub async fn user_by_link(
        &self,
        workspace: &str,
        connection: &str,
        subject: &str,
    ) -> Result<Option<LinkedUser>> {
        // A primary-key probe and one joined row: a point read.
        self.read_optional(
            "SELECT r.id, r.active, r.deleted_at FROM identity_links l \
             JOIN scim_resources r ON r.workspace = l.workspace AND r.id = l.user_id \
             WHERE l.workspace = $1 AND l.connection = $2 AND l.subject = $3 AND r.kind = 'User' \
             ORDER BY r.deleted_at IS NOT NULL LIMIT 1",
            &[workspace.into(), connection.into(), subject.into()],
            linked_user,
        )
        .await
    }

    /// The visible user SCIM provisioned with `externalId` equal to `subject`
    /// (Okta's SCIM externalId is the same user id its ID tokens carry as `sub`).
    pub async fn user_by_external_id(
        &self,
        workspace: &str,
        subject: &str,
    ) -> Result<Option<LinkedUser>> {
        self.read_optional(
            "SELECT id, active, deleted_at FROM scim_resources WHERE workspace = $1 \
             AND kind = 'User' AND external_id = $2 AND deleted_at IS NULL",
            &[workspace.into(), subject.into()],
            linked_user,
        )
        .await
    }

    /// The subject a user is bound to for a connection, if any.
    pub async fn linked_subject(
        &self,
        workspace: &str,
        user_id: &str,
        connection: &str,
    ) -> Result<Option<String>> {
        self.read_optional(
            "SELECT subject FROM identity_links WHERE workspace = $1 AND user_id = $2 \
             AND connection = $3",
            &[workspace.into(), user_id.into(), connection.into()],
            |row| row.text("subject"),
        )
        .await
    }

    /// Binds `subject` of a connection to a user, replacing the user's previous
    /// binding for that connection (a relink, audited by `entry` when given).
    pub async fn link_identity(
        &self,
        workspace: &str,
        connection: &str,
        subject: &str,
        user_id: &str,
        entry: Option<&AuditEntry>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "DELETE FROM identity_links WHERE workspace = $1 AND connection = $2 \
             AND (user_id = $3 OR subject = $4)",
            &[
                workspace.into(),
                connection.into(),
                user_id.into(),
                subject.into(),
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO identity_links (workspace, connection, subject, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                workspace.into(),
                connection.into(),
                subject.into(),
                user_id.into(),
                now.into(),
            ],
        )
        .await?;
        if let Some(entry) = entry {
            audit::insert(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
