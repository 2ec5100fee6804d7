//! Configuration objects: workspaces, SSO connections and role mappings, each a JSON
//! document with a content fingerprint.

use super::{AuditEntry, Result, Store, StoreError, args, audit, columns::Columns, now_millis};
pub use crate::admin::ObjectKind;

/// An object as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub kind: ObjectKind,
    pub workspace: String,
    pub name: String,
    pub body: serde_json::Value,
    pub fingerprint: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a PUT did.
#[derive(Debug, Clone, PartialEq)]
pub enum PutOutcome {
    Created(StoredObject),
    Updated(StoredObject),
    /// The stored fingerprint already matched: nothing was written.
    Unchanged(StoredObject),
    /// The workspace already holds the one object of this kind it may have
    /// (named here): nothing was written.
    Occupied(String),
}

impl PutOutcome {
    /// The object as stored now; `None` when the put was refused.
    pub fn object(&self) -> Option<&StoredObject> {
        match self {
            PutOutcome::Created(o) | PutOutcome::Updated(o) | PutOutcome::Unchanged(o) => Some(o),
            PutOutcome::Occupied(_) => None,
        }
    }
}

/// An object's columns, as `decode` reads them.
const COLUMNS: &str = "workspace, name, body, fingerprint, created_at, updated_at";

/// One object by its key: `$1` kind, `$2` workspace, `$3` name.
static BY_KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM objects WHERE kind = $1 AND workspace = $2 AND name = $3")
});

/// A workspace's objects of a kind: `$1` workspace, `$2` kind.
static IN_WORKSPACE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM objects WHERE workspace = $1 AND kind = $2 ORDER BY name")
});

impl super::ScimTx {
    /// A workspace's objects of a kind, as this write sees them.
    pub async fn objects_in(
        &mut self,
        kind: ObjectKind,
        workspace: &str,
    ) -> Result<Vec<StoredObject>> {
        use super::reader::Read;
        self.tx
            .rows(
                &IN_WORKSPACE,
                &[workspace.into(), kind.as_str().into()],
                |row| decode(kind, row),
            )
            .await
    }
}

fn decode(kind: ObjectKind, row: &(impl Columns + ?Sized)) -> Result<StoredObject> {
    let workspace = row.text("workspace")?;
    let name = row.text("name")?;
    let body = row.text("body")?;
    let body = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
        kind: kind.as_str(),
        workspace: workspace.clone(),
        name: name.clone(),
        message: e.to_string(),
    })?;
    Ok(StoredObject {
        kind,
        workspace,
        name,
        body,
        fingerprint: row.text("fingerprint")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

impl Store {
    pub async fn get_object(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
    ) -> Result<Option<StoredObject>> {
        // A primary-key probe: a point read.
        self.read_optional(
            &BY_KEY,
            &[kind.as_str().into(), workspace.into(), name.into()],
            |row| decode(kind, row),
        )
        .await
    }

    /// Objects of a kind, in one workspace or in all, ordered by workspace and name.
    pub async fn list_objects(
        &self,
        kind: ObjectKind,
        workspace: Option<&str>,
    ) -> Result<Vec<StoredObject>> {
        match workspace {
            // An index range (workspace, kind): a point read. Every SCIM
            // write reads its workspace's role mapping this way.
            Some(workspace) => {
                self.read_all(
                    &IN_WORKSPACE,
                    &[workspace.into(), kind.as_str().into()],
                    |row| decode(kind, row),
                )
                .await
            }
            None => {
                args::fetch_sqlx(
                    &self.pool,
                    &format!(
                        "SELECT {COLUMNS} FROM objects WHERE kind = $1 ORDER BY workspace, name"
                    ),
                    &[kind.as_str().into()],
                    |row| decode(kind, row),
                )
                .await
            }
        }
    }

    /// Number of objects of any kind other than the workspace itself, and of SCIM
    /// tokens still valid, in a workspace.
    pub async fn count_dependents(&self, workspace: &str) -> Result<i64> {
        let objects: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE workspace = $1 AND kind <> $2")
                .bind(workspace)
                .bind(ObjectKind::Workspace.as_str())
                .fetch_one(&self.pool)
                .await?;
        let tokens: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM scim_tokens WHERE workspace = $1 AND revoked_at IS NULL",
        )
        .bind(workspace)
        .fetch_one(&self.pool)
        .await?;
        Ok(objects + tokens)
    }

    /// Creates or replaces an object unless its fingerprint already matches; the audit
    /// entry is written in the same transaction, and only when something changed.
    pub async fn put_object(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
        body: &serde_json::Value,
        fingerprint: &str,
        audit_entry: AuditEntry,
    ) -> Result<PutOutcome> {
        let mut tx = self.begin_write().await?;
        let existing = tx
            .fetch_optional(
                &BY_KEY,
                &[kind.as_str().into(), workspace.into(), name.into()],
                |row| decode(kind, row),
            )
            .await?;

        if let Some(existing) = &existing
            && existing.fingerprint == fingerprint
        {
            tx.rollback().await?;
            return Ok(PutOutcome::Unchanged(existing.clone()));
        }

        if existing.is_none()
            && kind.one_per_workspace()
            && let Some(holder) = self.holder_of(&mut tx, kind, workspace).await?
        {
            tx.rollback().await?;
            return Ok(PutOutcome::Occupied(holder));
        }
        let now = now_millis();
        let created_at = existing.as_ref().map_or(now, |e| e.created_at);
        let body_text = body.to_string();
        tx.execute(
            "INSERT INTO objects (kind, workspace, name, body, fingerprint, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (kind, workspace, name) DO UPDATE SET \
             body = excluded.body, fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
            &[
                kind.as_str().into(),
                workspace.into(),
                name.into(),
                body_text.as_str().into(),
                fingerprint.into(),
                created_at.into(),
                now.into(),
            ],
        )
        .await?;
        // Which it was shows in the entry (and the event it makes).
        let mut audit_entry = audit_entry;
        if let Some(serde_json::Value::Object(detail)) = audit_entry.detail.as_mut() {
            detail.insert("created".into(), existing.is_none().into());
        }
        audit::insert(&mut tx, &audit_entry, now).await?;
        tx.commit().await?;

        let stored = StoredObject {
            kind,
            workspace: workspace.to_string(),
            name: name.to_string(),
            body: body.clone(),
            fingerprint: fingerprint.to_string(),
            created_at,
            updated_at: now,
        };
        Ok(match existing {
            Some(_) => PutOutcome::Updated(stored),
            None => PutOutcome::Created(stored),
        })
    }

    /// The name of the object of `kind` a workspace already holds, read in
    /// the write that would add another. SQLite has one writer, so the read
    /// and the insert cannot interleave with another's; PostgreSQL locks the
    /// workspace's own row first, so two first puts of different names run
    /// one after the other and the second sees the first.
    async fn holder_of(
        &self,
        tx: &mut super::WriteTx,
        kind: ObjectKind,
        workspace: &str,
    ) -> Result<Option<String>> {
        if self.backend == super::Backend::Postgres {
            tx.fetch_optional(
                "SELECT name FROM objects WHERE kind = $1 AND workspace = $2 AND name = $2 \
                 FOR UPDATE",
                &[ObjectKind::Workspace.as_str().into(), workspace.into()],
                |row| row.text("name"),
            )
            .await?;
        }
        tx.fetch_optional(
            "SELECT name FROM objects WHERE kind = $1 AND workspace = $2 ORDER BY name LIMIT 1",
            &[kind.as_str().into(), workspace.into()],
            |row| row.text("name"),
        )
        .await
    }

    /// Deletes an object; returns whether it existed. With `cascade` on a workspace,
    /// everything in the workspace goes too, tokens revoked.
    pub async fn delete_object(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
        cascade: bool,
        audit_entry: AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = tx
            .execute(
                "DELETE FROM objects WHERE kind = $1 AND workspace = $2 AND name = $3",
                &[kind.as_str().into(), workspace.into(), name.into()],
            )
            .await?
            > 0;
        if !deleted {
            tx.rollback().await?;
            return Ok(false);
        }
        let now = now_millis();
        if kind == ObjectKind::Webhook {
            // An endpoint declared again under this name starts afresh.
            tx.execute(
                "DELETE FROM webhook_cursors WHERE workspace = $1 AND webhook = $2",
                &[workspace.into(), name.into()],
            )
            .await?;
        }
        if kind == ObjectKind::SsoConnection {
            // A connection declared again is warned about afresh.
            tx.execute(
                "DELETE FROM certificate_warnings WHERE workspace = $1 AND connection = $2",
                &[workspace.into(), name.into()],
            )
            .await?;
        }
        if cascade && kind == ObjectKind::Workspace {
            // Its events go too, so a next claimant of the id cannot read
            // them; its sequence stays, so event ids are never reused.
            for table in [
                "objects",
                "events",
                "webhook_cursors",
                "certificate_warnings",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE workspace = $1"),
                    &[workspace.into()],
                )
                .await?;
            }
            // Every credential of the workspace dies with it: its SCIM
            // tokens, and its members' sessions and API keys.
            for table in ["scim_tokens", "sessions", "api_keys"] {
                tx.execute(
                    &format!(
                        "UPDATE {table} SET revoked_at = $2 WHERE workspace = $1 AND revoked_at IS NULL"
                    ),
                    &[workspace.into(), now.into()],
                )
                .await?;
            }
        }
        audit::insert(&mut tx, &audit_entry, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}
