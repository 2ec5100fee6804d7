//! API keys of users and service accounts, stored as SHA-256 hashes.
//!
//! A key belongs to one principal. It is accepted while it is neither revoked
//! nor expired and its principal is neither deleted nor deactivated; SCIM
//! deprovisioning also revokes every key of the principal in its own write
//! (`ScimTx::revoke_api_keys`), so a key stays dead if the principal returns.

use super::{
    AuditEntry, Result, Store, audit,
    columns::Columns,
    scim::{ScimTx, kind_of_principal},
};
use crate::scim::schema::ResourceKind;

/// Most live keys one principal may hold: a session can mint keys, and
/// without a bound one person could grow the table at will.
pub const MAX_LIVE_KEYS: i64 = 100;

/// Why a key was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefused {
    /// The principal is missing, deleted or deactivated.
    NoPrincipal,
    /// The principal already holds [`MAX_LIVE_KEYS`] live keys.
    TooMany,
}

/// A stored key, as listings show it (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub workspace: String,
    pub principal_id: String,
    pub name: String,
    pub issued_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl ApiKeyRecord {
    /// Whether the key is accepted at `now` (ms), its principal permitting.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A live key and what a check answers about its principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveApiKey {
    pub id: String,
    pub hash: String,
    pub workspace: String,
    pub principal_id: String,
    pub principal_kind: ResourceKind,
    /// The lower-cased userName (a service account's displayName).
    pub principal_name: String,
    pub role: Option<String>,
    /// Effective role assignments, as stored (JSON `[{type, value}]`).
    pub assignments: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str = "id, workspace, principal_id, name, issued_by, created_at, expires_at, revoked_at, last_used_at";

fn decode(row: &(impl Columns + ?Sized)) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        workspace: row.text("workspace")?,
        principal_id: row.text("principal_id")?,
        name: row.text("name")?,
        issued_by: row.text("issued_by")?,
        created_at: row.int("created_at")?,
        expires_at: row.opt_int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        last_used_at: row.opt_int("last_used_at")?,
    })
}

impl Store {
    /// Stores a key for a live, active principal holding fewer than
    /// [`MAX_LIVE_KEYS`], with its audit entry, in one transaction. Nothing is
    /// written when it is refused.
    pub async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        hash: &str,
        entry: &AuditEntry,
    ) -> Result<std::result::Result<(), KeyRefused>> {
        let mut tx = self.begin_write().await?;
        // The principal is read inside the write, so a deprovisioning cannot
        // slip in between the check and the insert.
        let live = tx
            .fetch_optional(
                concat!(
                    "SELECT r.kind FROM scim_resources r WHERE r.workspace = $1 AND r.id = $2 AND ",
                    admitted!("r")
                ),
                &[(&key.workspace).into(), (&key.principal_id).into()],
                |row| row.text("kind"),
            )
            .await?;
        if live.is_none_or(|kind| kind_of_principal(&kind).is_none()) {
            tx.rollback().await?;
            return Ok(Err(KeyRefused::NoPrincipal));
        }
        let held = tx
            .fetch_one(
                "SELECT COUNT(*) AS n FROM api_keys WHERE workspace = $1 AND principal_id = $2 \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
                &[
                    (&key.workspace).into(),
                    (&key.principal_id).into(),
                    key.created_at.into(),
                ],
                |row| row.int("n"),
            )
            .await?;
        if held >= MAX_LIVE_KEYS {
            tx.rollback().await?;
            return Ok(Err(KeyRefused::TooMany));
        }
        tx.execute(
            "INSERT INTO api_keys (id, workspace, principal_id, name, hash, issued_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                (&key.id).into(),
                (&key.workspace).into(),
                (&key.principal_id).into(),
                (&key.name).into(),
                hash.into(),
                (&key.issued_by).into(),
                key.created_at.into(),
                key.expires_at.into(),
            ],
        )
        .await?;
        audit::insert(&mut tx, entry, key.created_at).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// A workspace's keys, or one principal's, oldest first.
    pub async fn api_keys(
        &self,
        workspace: &str,
        principal_id: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>> {
        let (sql, args) = match principal_id {
            Some(p) => (
                format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE workspace = $1 AND principal_id = $2 \
                     ORDER BY created_at, id"
                ),
                vec![workspace.into(), p.into()],
            ),
            None => (
                format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE workspace = $1 ORDER BY created_at, id"
                ),
                vec![workspace.into()],
            ),
        };
        self.read_all(&sql, &args, |row| decode(row)).await
    }

    /// Revokes one key of `workspace` (and of `principal_id`, when given);
    /// `false` when there is no such live key.
    pub async fn revoke_api_key(
        &self,
        workspace: &str,
        id: &str,
        principal_id: Option<&str>,
        entry: &AuditEntry,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = match principal_id {
            Some(principal) => {
                tx.execute(
                    "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND workspace = $2 \
                     AND principal_id = $4 AND revoked_at IS NULL",
                    &[id.into(), workspace.into(), now.into(), principal.into()],
                )
                .await?
            }
            None => {
                tx.execute(
                    "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND workspace = $2 \
                     AND revoked_at IS NULL",
                    &[id.into(), workspace.into(), now.into()],
                )
                .await?
            }
        };
        if n > 0 {
            audit::insert(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// A key that is neither revoked nor expired, of a principal that is
    /// neither deleted nor deactivated, with the principal's role now.
    pub async fn live_api_key(&self, id: &str, now: i64) -> Result<Option<LiveApiKey>> {
        // A primary-key probe and one joined row: a point read.
        self.read_optional(
            concat!(
                "SELECT k.id, k.hash, k.workspace, k.principal_id, r.kind, r.name_key, r.role, \
             r.assignments, k.created_at, k.expires_at, k.last_used_at \
             FROM api_keys k JOIN scim_resources r \
             ON r.workspace = k.workspace AND r.id = k.principal_id \
             WHERE k.id = $1 AND k.revoked_at IS NULL \
             AND (k.expires_at IS NULL OR k.expires_at > $2) AND ",
                admitted!("r")
            ),
            &[id.into(), now.into()],
            |row| {
                let Some(principal_kind) = kind_of_principal(&row.text("kind")?) else {
                    return Ok(None);
                };
                Ok(Some(LiveApiKey {
                    id: row.text("id")?,
                    hash: row.text("hash")?,
                    workspace: row.text("workspace")?,
                    principal_id: row.text("principal_id")?,
                    principal_kind,
                    principal_name: row.text("name_key")?,
                    role: row.opt_text("role")?,
                    assignments: row.opt_text("assignments")?,
                    created_at: row.int("created_at")?,
                    expires_at: row.opt_int("expires_at")?,
                    last_used_at: row.opt_int("last_used_at")?,
                }))
            },
        )
        .await
        .map(Option::flatten)
    }

    /// Records that a key was used at `now`.
    pub async fn touch_api_key(&self, id: &str, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
            &[id.into(), now.into()],
        )
        .await?;
        tx.commit().await
    }
}

impl ScimTx {
    /// Revokes every live key of a principal; returns how many.
    pub async fn revoke_api_keys(
        &mut self,
        workspace: &str,
        principal_id: &str,
        now: i64,
    ) -> Result<u64> {
        self.tx
            .execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE workspace = $2 AND principal_id = $3 \
                 AND revoked_at IS NULL",
                &[now.into(), workspace.into(), principal_id.into()],
            )
            .await
    }
}
