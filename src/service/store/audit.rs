//! The append-only audit log.

use sqlx::Row;

use super::{Result, Store, now_millis, timestamp};
pub use crate::admin::AuditRecord;

/// An entry to append. `detail` is structured context; it never holds secret values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEntry {
    pub workspace: Option<String>,
    pub actor: String,
    pub action: String,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Which entries to read. Times are ms since the epoch; results are newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub workspace: Option<String>,
    pub kind: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only entries with an id below this (for paging backwards).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Appends an entry inside a write; answers its id.
pub(super) async fn insert(tx: &mut super::WriteTx, entry: &AuditEntry, at: i64) -> Result<i64> {
    let detail = entry.detail.as_ref().map(|d| d.to_string());
    // The change's event, if it makes one, in the same write.
    super::events::record(tx, entry, at).await?;
    tx.fetch_one(
        "INSERT INTO audit_log (at, workspace, actor, action, kind, name, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        &[
            at.into(),
            entry.workspace.as_deref().into(),
            entry.actor.as_str().into(),
            entry.action.as_str().into(),
            entry.kind.as_deref().into(),
            entry.name.as_deref().into(),
            detail.as_deref().into(),
        ],
        |row| row.int("id"),
    )
    .await
}

impl Store {
    /// Appends an entry on its own (for events that change nothing else, such as a
    /// refused admin token).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert(&mut tx, entry, now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends an entry on its own and answers its id (for an aggregate entry
    /// whose count is set when its minute is over).
    pub async fn append_audit_returning_id(&self, entry: &AuditEntry) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let id = insert(&mut tx, entry, now_millis()).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Rewrites the detail of an aggregate entry (its final count). Entries
    /// are otherwise never changed.
    pub async fn set_audit_detail(&self, id: i64, detail: &serde_json::Value) -> Result<()> {
        let text = detail.to_string();
        let mut tx = self.begin_write().await?;
        tx.execute(
            "UPDATE audit_log SET detail = $1 WHERE id = $2",
            &[text.as_str().into(), id.into()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes entries older than `before` (ms), at most `batch` of them (the
    /// oldest); answers how many went. The retention pruner calls it until
    /// it answers less than `batch`, so no transaction grows unbounded.
    pub async fn prune_audit(&self, before: i64, batch: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let deleted = tx
            .execute(
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)",
                &[before.into(), batch.into()],
            )
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, at, workspace, actor, action, kind, name, detail FROM audit_log \
             WHERE ($1 = '' OR workspace = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR action = $3) \
             AND at >= $4 AND at <= $5 AND id < $6 \
             ORDER BY id DESC LIMIT $7",
        )
        .bind(filter.workspace.as_deref().unwrap_or(""))
        .bind(filter.kind.as_deref().unwrap_or(""))
        .bind(filter.action.as_deref().unwrap_or(""))
        .bind(filter.since.unwrap_or(0))
        .bind(filter.until.unwrap_or(i64::MAX))
        .bind(filter.before_id.unwrap_or(i64::MAX))
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let detail: Option<String> = row.try_get("detail")?;
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    at: timestamp(row.try_get("at")?),
                    workspace: row.try_get("workspace")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    kind: row.try_get("kind")?,
                    name: row.try_get("name")?,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect()
    }
}
