//! The SCIM write transaction: resource, value index, memberships, roles and
//! audit entries in one commit, and what a unique-index violation means.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::super::{
    Backend, Result, Store, StoreError, WriteTx, args::Arg, audit, placeholders,
    reader::rows_for_ids,
};
use super::members::member_name;
use super::records::{ResourceWrite, ScimRecord, doc_text, get, kind_of};
use super::values::value_rows;
use crate::scim::schema::ResourceKind;

impl Store {
    /// Begins a SCIM write transaction.
    pub async fn scim_write(&self) -> Result<ScimTx> {
        Ok(ScimTx {
            tx: self.begin_write().await?,
            backend: self.backend,
            revoked: Vec::new(),
        })
    }
}

/// A write transaction over SCIM resources. Dropped without `commit`, it rolls back.
pub struct ScimTx {
    pub(in crate::service::store) tx: WriteTx,
    pub(super) backend: Backend,
    /// (workspace, principal id) of each principal whose credentials this
    /// write revoked, for the caller to drop from caches once it commits.
    revoked: Vec<(String, String)>,
}

/// A live user as a recompute reads it (see [`ScimTx::user_rows`]).
#[derive(Debug, Clone)]
pub struct UserRow {
    pub pk: i64,
    /// `User` or `ServiceAccount`.
    pub kind: ResourceKind,
    pub role: Option<String>,
    pub pending: Option<String>,
    /// Since when `pending` waits.
    pub pending_since: Option<i64>,
    /// Whether the user is in one of the workspace's access groups, as last
    /// decided (always, without access groups).
    pub has_access: bool,
    /// When asked for: the document and the stored effective assignments.
    pub assignments: Option<(String, Option<String>)>,
}

/// A resource to insert: where, what, with which role (and role awaiting
/// approval), when.
pub struct NewResource<'a> {
    pub workspace: &'a str,
    pub kind: ResourceKind,
    pub write: &'a ResourceWrite<'a>,
    pub role: (Option<&'a str>, Option<&'a str>),
    pub now: i64,
}

impl ScimTx {
    /// Commits; answers (workspace, principal id) of each principal whose
    /// sessions and keys the write revoked.
    pub async fn commit(self) -> Result<Vec<(String, String)>> {
        self.tx.commit().await?;
        Ok(self.revoked)
    }

    /// A visible resource by id, as this transaction sees it.
    pub async fn get(
        &mut self,
        workspace: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ScimRecord>> {
        get(&mut self.tx, workspace, kind, id).await
    }

    /// Which unique attribute another visible resource already holds, if any.
    pub async fn conflict(
        &mut self,
        workspace: &str,
        kind: ResourceKind,
        write: &ResourceWrite<'_>,
        except_pk: Option<i64>,
    ) -> Result<Option<&'static str>> {
        let except = except_pk.unwrap_or(-1);
        if kind == ResourceKind::User {
            let taken = self
                .tx
                .fetch_optional(
                    "SELECT pk FROM scim_resources WHERE workspace = $1 AND kind = 'User' \
                     AND name_key = $2 AND deleted_at IS NULL AND pk <> $3",
                    &[workspace.into(), (&write.name_key).into(), except.into()],
                    |row| row.int("pk"),
                )
                .await?;
            if taken.is_some() {
                return Ok(Some("userName"));
            }
        }
        if let Some(external_id) = write.external_id {
            let taken = self
                .tx
                .fetch_optional(
                    "SELECT pk FROM scim_resources WHERE workspace = $1 AND kind = $2 \
                     AND external_id = $3 AND deleted_at IS NULL AND pk <> $4",
                    &[
                        workspace.into(),
                        kind.as_str().into(),
                        external_id.into(),
                        except.into(),
                    ],
                    |row| row.int("pk"),
                )
                .await?;
            if taken.is_some() {
                return Ok(Some("externalId"));
            }
        }
        Ok(None)
    }

    /// Inserts a new resource (a user with the role decided before the
    /// write), its searchable values and, when given, its audit entry;
    /// returns the resource's pk. A taken `userName` or `externalId` fails on
    /// the unique indexes before anything is written.
    pub async fn insert(
        &mut self,
        new: &NewResource<'_>,
        audit_entry: Option<&audit::AuditEntry>,
    ) -> Result<i64> {
        let w = new.write;
        let doc = doc_text(w.doc);
        let pk = self
            .tx
            .fetch_one(
                "INSERT INTO scim_resources (workspace, kind, id, external_id, name_key, \
                 display_name, active, role, pending_role, pending_since, doc, version, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $12) RETURNING pk",
                &[
                    new.workspace.into(),
                    new.kind.as_str().into(),
                    w.id.into(),
                    w.external_id.into(),
                    (&w.name_key).into(),
                    w.display_name.into(),
                    (w.active as i64).into(),
                    new.role.0.into(),
                    new.role.1.into(),
                    new.role.1.map(|_| new.now).into(),
                    doc.as_str().into(),
                    new.now.into(),
                ],
                |row| row.int("pk"),
            )
            .await?;
        self.write_values(pk, new.kind, w.doc, false).await?;
        if let Some(entry) = audit_entry {
            self.audit(entry, new.now).await?;
        }
        Ok(pk)
    }

    /// Rewrites a resource's attributes; returns the new version.
    pub async fn update(
        &mut self,
        pk: i64,
        kind: ResourceKind,
        w: &ResourceWrite<'_>,
        now: i64,
    ) -> Result<i64> {
        let doc = doc_text(w.doc);
        let version = self
            .tx
            .fetch_one(
                "UPDATE scim_resources SET external_id = $1, name_key = $2, display_name = $3, \
                 active = $4, doc = $5, version = version + 1, updated_at = $6 WHERE pk = $7 \
                 RETURNING version",
                &[
                    w.external_id.into(),
                    (&w.name_key).into(),
                    w.display_name.into(),
                    (w.active as i64).into(),
                    doc.as_str().into(),
                    now.into(),
                    pk.into(),
                ],
                |row| row.int("version"),
            )
            .await?;
        self.write_values(pk, kind, w.doc, true).await?;
        // Groups this resource is a member of show its new name.
        self.tx
            .execute(
                "UPDATE scim_members SET member_name = $2 \
                 WHERE member_id = $1 AND member_name IS DISTINCT FROM $2",
                &[w.id.into(), member_name(w).into()],
            )
            .await?;
        Ok(version)
    }

    async fn write_values(
        &mut self,
        pk: i64,
        kind: ResourceKind,
        doc: &Map<String, Value>,
        replace: bool,
    ) -> Result<()> {
        if replace {
            self.tx
                .execute(
                    "DELETE FROM scim_values WHERE resource_pk = $1",
                    &[pk.into()],
                )
                .await?;
        }
        let rows = value_rows(kind, doc);
        // Multi-row inserts, 100 rows (600 parameters) at a time.
        for chunk in rows.chunks(100) {
            let lowered: Vec<String> = chunk.iter().map(|row| row.3.to_lowercase()).collect();
            let tuples: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(6 * i + 1, 6)))
                .collect();
            // Only placeholders are formatted in; values are bound.
            let sql = format!(
                "INSERT INTO scim_values (resource_pk, attr, path, elem, v_text, v_lower) VALUES {}",
                tuples.join(", ")
            );
            let mut args = Vec::with_capacity(6 * chunk.len());
            for ((attr, path, elem, text), lower) in chunk.iter().zip(&lowered) {
                args.extend::<[Arg; 6]>([
                    pk.into(),
                    attr.into(),
                    path.into(),
                    (*elem).into(),
                    text.into(),
                    lower.into(),
                ]);
            }
            self.tx.execute(&sql, &args).await?;
        }
        Ok(())
    }

    /// Bumps a resource's version (membership changed); returns the new version.
    pub async fn touch(&mut self, pk: i64, now: i64) -> Result<i64> {
        self.tx
            .fetch_one(
                "UPDATE scim_resources SET version = version + 1, updated_at = $1 WHERE pk = $2 \
                 RETURNING version",
                &[now.into(), pk.into()],
                |row| row.int("version"),
            )
            .await
    }

    /// Soft delete: hidden from SCIM, kept (deactivated, with its role) for the audit trail.
    pub async fn mark_deleted(&mut self, pk: i64, now: i64) -> Result<()> {
        self.tx
            .execute(
                "UPDATE scim_resources SET deleted_at = $1, active = 0, updated_at = $1 WHERE pk = $2",
                &[now.into(), pk.into()],
            )
            .await?;
        Ok(())
    }

    pub async fn hard_delete(&mut self, pk: i64) -> Result<()> {
        self.tx
            .execute("DELETE FROM scim_resources WHERE pk = $1", &[pk.into()])
            .await?;
        Ok(())
    }

    /// What a recompute needs of each of `user_ids` that is a live user, in
    /// one read: pk, role, pending role and, when `with_assignments`, the
    /// document and stored effective assignments.
    pub async fn user_rows(
        &mut self,
        workspace: &str,
        user_ids: &[String],
        with_assignments: bool,
    ) -> Result<HashMap<String, UserRow>> {
        // The kind is checked here, not in SQL: with `kind = 'User'` beside an
        // IN list, SQLite (no statistics) preferred the (workspace, kind, …)
        // index and walked every user of the workspace per statement.
        let extra = if with_assignments {
            ", doc, assignments"
        } else {
            ""
        };
        let sql = |ids: &str| {
            format!(
                "SELECT id, kind, pk, role, pending_role, pending_since, access_revoked_at{extra} \
                 FROM scim_resources \
                 WHERE workspace = $1 AND id IN ({ids}) AND deleted_at IS NULL"
            )
        };
        let rows = rows_for_ids(&mut self.tx, workspace.into(), user_ids, sql, |row| {
            let kind = kind_of(&row.text("kind")?);
            let found = UserRow {
                pk: row.int("pk")?,
                kind,
                role: row.opt_text("role")?,
                pending: row.opt_text("pending_role")?,
                pending_since: row.opt_int("pending_since")?,
                has_access: row.opt_int("access_revoked_at")?.is_none(),
                assignments: match with_assignments {
                    true => Some((row.text("doc")?, row.opt_text("assignments")?)),
                    false => None,
                },
            };
            Ok(kind.is_principal().then_some((row.text("id")?, found)))
        })
        .await?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// Stores a user's effective assignments (JSON), or none.
    pub async fn set_assignments(&mut self, pk: i64, assignments: Option<&str>) -> Result<()> {
        self.tx
            .execute(
                "UPDATE scim_resources SET assignments = $1 WHERE pk = $2",
                &[assignments.into(), pk.into()],
            )
            .await?;
        Ok(())
    }

    /// Forgets the effective assignments of `user_ids` (the workspace no
    /// longer declares any).
    pub async fn clear_assignments(&mut self, workspace: &str, user_ids: &[String]) -> Result<()> {
        let sql = |ids: &str| {
            format!(
                "UPDATE scim_resources SET assignments = NULL WHERE workspace = $1 \
                 AND id IN ({ids}) AND assignments IS NOT NULL RETURNING pk"
            )
        };
        rows_for_ids(&mut self.tx, workspace.into(), user_ids, sql, |row| {
            row.int("pk")
        })
        .await?;
        Ok(())
    }

    pub async fn set_role(
        &mut self,
        pk: i64,
        role: Option<&str>,
        pending: Option<(&str, i64)>,
    ) -> Result<()> {
        let (pending, since) = pending.unzip();
        self.tx
            .execute(
                "UPDATE scim_resources SET role = $1, pending_role = $2, pending_since = $3 \
                 WHERE pk = $4",
                &[role.into(), pending.into(), since.into(), pk.into()],
            )
            .await?;
        Ok(())
    }

    /// Records whether a user is in one of the workspace's access groups.
    pub async fn set_access(&mut self, pk: i64, has_access: bool, now: i64) -> Result<()> {
        let revoked_at = (!has_access).then_some(now);
        self.tx
            .execute(
                "UPDATE scim_resources SET access_revoked_at = $1 WHERE pk = $2",
                &[revoked_at.into(), pk.into()],
            )
            .await?;
        Ok(())
    }

    /// Revokes every session and API key of a principal, in the write that
    /// takes its access away; answers how many of each.
    pub async fn revoke_credentials(
        &mut self,
        workspace: &str,
        id: &str,
        now: i64,
    ) -> Result<(u64, u64)> {
        let sessions = self.revoke_sessions(workspace, id, now).await?;
        let keys = self.revoke_api_keys(workspace, id, now).await?;
        self.revoked.push((workspace.to_string(), id.to_string()));
        Ok((sessions, keys))
    }

    /// Revokes every live session of a user; returns how many.
    pub async fn revoke_sessions(
        &mut self,
        workspace: &str,
        user_id: &str,
        now: i64,
    ) -> Result<u64> {
        self.tx
            .execute(
                "UPDATE sessions SET revoked_at = $1 WHERE workspace = $2 AND user_id = $3 \
                 AND revoked_at IS NULL",
                &[now.into(), workspace.into(), user_id.into()],
            )
            .await
    }

    pub async fn audit(&mut self, entry: &audit::AuditEntry, now: i64) -> Result<()> {
        audit::insert(&mut self.tx, entry, now).await?;
        Ok(())
    }
}

/// What a unique-index violation says (the message, and the constraint's
/// name where the driver gives it); `None` for any other error.
fn unique_violation(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Database(sqlx::Error::Database(d))
            if d.kind() == sqlx::error::ErrorKind::UniqueViolation =>
        {
            Some(format!(
                "{} {}",
                d.message(),
                d.constraint().unwrap_or_default()
            ))
        }
        // The SQLite writer (rusqlite).
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, message))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Some(message.clone().unwrap_or_default())
        }
        _ => None,
    }
}

/// Whether a store error is a unique-index violation (two writers raced past the
/// conflict check on PostgreSQL).
pub fn is_unique_violation(e: &StoreError) -> bool {
    unique_violation(e).is_some()
}

/// Which SCIM attribute a unique-index violation on `scim_resources` is about:
/// SQLite names the columns (`… scim_resources.name_key`), PostgreSQL the index
/// (`scim_users_unique_name`, `scim_resources_unique_external_id`).
pub fn unique_attribute(e: &StoreError) -> Option<&'static str> {
    let said = unique_violation(e)?;
    if said.contains("name_key") || said.contains("scim_users_unique_name") {
        Some("userName")
    } else if said.contains("external_id") {
        Some("externalId")
    } else {
        None
    }
}
