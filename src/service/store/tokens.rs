//! SCIM credentials (bearer tokens, and HTTP Basic client secrets), stored as
//! SHA-256 hashes.

use super::{AuditEntry, Result, Store, audit, columns::Columns, now_millis};
use crate::api::ScimAuthentication;

/// What the admin API registers: never the token, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRegistration {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub scheme: ScimAuthentication,
    /// Lower-case hex SHA-256 of the whole token; `None` updates an existing token's
    /// name and expiry only.
    pub hash: Option<String>,
    pub expires_at: Option<i64>,
}

/// What [`Store::usage_since`] reads: (workspace, name or id, Unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRows {
    pub tokens: Vec<(String, String, i64)>,
    pub connections: Vec<(String, String, i64)>,
}

/// A token row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub scheme: ScimAuthentication,
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl StoredToken {
    /// Whether the token is accepted at `now` (ms).
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

const COLUMNS: &str =
    "id, workspace, name, scheme, hash, created_at, expires_at, revoked_at, last_used_at";

fn decode(row: &(impl Columns + ?Sized)) -> Result<StoredToken> {
    Ok(StoredToken {
        id: row.text("id")?,
        workspace: row.text("workspace")?,
        name: row.text("name")?,
        // Written only as `bearer` or `basic`.
        scheme: match row.text("scheme")?.as_str() {
            "basic" => ScimAuthentication::Basic,
            _ => ScimAuthentication::Bearer,
        },
        hash: row.text("hash")?,
        created_at: row.int("created_at")?,
        expires_at: row.opt_int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        last_used_at: row.opt_int("last_used_at")?,
    })
}

fn token_and_workspace(row: &(impl Columns + ?Sized)) -> Result<(StoredToken, Option<String>)> {
    Ok((decode(row)?, row.opt_text("workspace_body")?))
}

/// Outcome of registering a token hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPut {
    Created(StoredToken),
    /// Same id, hash and expiry already stored: nothing written.
    Unchanged(StoredToken),
    /// Same id and hash; expiry changed (e.g. the overlap window was set).
    Updated(StoredToken),
    /// The id exists with another hash or in another workspace: refused, because a
    /// token id names one token forever.
    Conflict,
    /// No token with this id, and no hash to register one.
    Missing,
}

impl Store {
    pub async fn get_token(&self, id: &str) -> Result<Option<StoredToken>> {
        let sql = format!("SELECT {COLUMNS} FROM scim_tokens WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// A token and, in the same statement, the stored document of its
    /// workspace: SCIM authentication needs both on every request, and on
    /// PostgreSQL each statement is a round trip over the network.
    pub async fn get_token_with_workspace(
        &self,
        id: &str,
    ) -> Result<Option<(StoredToken, Option<String>)>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("t.{c}")).collect();
            format!(
                "SELECT {}, o.body AS workspace_body FROM scim_tokens t \
                 LEFT JOIN objects o ON o.kind = $2 AND o.workspace = t.workspace AND o.name = t.workspace \
                 WHERE t.id = $1",
                columns.join(", ")
            )
        });
        let kind = super::ObjectKind::Workspace.as_str();
        // A primary-key probe: a point read.
        self.read_optional(&SQL, &[id.into(), kind.into()], |row| {
            token_and_workspace(row)
        })
        .await
    }

    /// Whether a workspace has a live HTTP Basic credential (its
    /// ServiceProviderConfig then lists `httpbasic`).
    pub async fn has_basic_credentials(&self, workspace: &str, now: i64) -> Result<bool> {
        let found = self
            .read_optional(
                "SELECT id FROM scim_tokens WHERE workspace = $1 AND scheme = 'basic' \
                 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) LIMIT 1",
                &[workspace.into(), now.into()],
                |row| row.text("id"),
            )
            .await?;
        Ok(found.is_some())
    }

    pub async fn list_tokens(&self, workspace: &str) -> Result<Vec<StoredToken>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM scim_tokens WHERE workspace = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Registers a token hash, idempotently.
    pub async fn put_token(
        &self,
        reg: &TokenRegistration,
        audit_entry: AuditEntry,
    ) -> Result<TokenPut> {
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT {COLUMNS} FROM scim_tokens WHERE id = $1");
        let existing = tx
            .fetch_optional(&sql, &[(&reg.id).into()], |row| decode(row))
            .await?;
        let now = now_millis();
        let outcome = match existing {
            // A token id names one credential forever: its hash, workspace
            // and scheme never change.
            Some(t)
                if reg.hash.as_ref().is_some_and(|h| *h != t.hash)
                    || t.workspace != reg.workspace
                    || (reg.hash.is_some() && t.scheme != reg.scheme) =>
            {
                TokenPut::Conflict
            }
            Some(t) if t.expires_at == reg.expires_at && t.name == reg.name => {
                TokenPut::Unchanged(t)
            }
            Some(mut t) => {
                tx.execute(
                    "UPDATE scim_tokens SET expires_at = $2, name = $3 WHERE id = $1",
                    &[(&reg.id).into(), reg.expires_at.into(), (&reg.name).into()],
                )
                .await?;
                t.expires_at = reg.expires_at;
                t.name = reg.name.clone();
                TokenPut::Updated(t)
            }
            None if reg.hash.is_none() => TokenPut::Missing,
            None => {
                let hash = reg.hash.clone().unwrap_or_default();
                tx.execute(
                    "INSERT INTO scim_tokens (id, workspace, name, scheme, hash, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        (&reg.id).into(),
                        (&reg.workspace).into(),
                        (&reg.name).into(),
                        reg.scheme.as_str().into(),
                        (&hash).into(),
                        now.into(),
                        reg.expires_at.into(),
                    ],
                )
                .await?;
                TokenPut::Created(StoredToken {
                    id: reg.id.clone(),
                    workspace: reg.workspace.clone(),
                    name: reg.name.clone(),
                    scheme: reg.scheme,
                    hash,
                    created_at: now,
                    expires_at: reg.expires_at,
                    revoked_at: None,
                    last_used_at: None,
                })
            }
        };
        match outcome {
            TokenPut::Created(_) | TokenPut::Updated(_) => {
                audit::insert(&mut tx, &audit_entry, now).await?;
                tx.commit().await?;
            }
            _ => tx.rollback().await?,
        }
        Ok(outcome)
    }

    /// Revokes a token; returns false when it did not exist or was already revoked.
    pub async fn revoke_token(
        &self,
        workspace: &str,
        id: &str,
        audit_entry: AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = now_millis();
        let changed = tx
            .execute(
                "UPDATE scim_tokens SET revoked_at = $3 WHERE id = $1 AND workspace = $2 \
                 AND revoked_at IS NULL",
                &[id.into(), workspace.into(), now.into()],
            )
            .await?
            > 0;
        if changed {
            audit::insert(&mut tx, &audit_entry, now).await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(changed)
    }

    /// (workspace, token id, last use) of every token used after `since`,
    /// and (workspace, connection, last success) of every connection with a
    /// successful sign-in after it. Both tables hold a row per credential or
    /// connection, not per request: a scan of either is small.
    pub async fn usage_since(&self, since: i64) -> Result<UsageRows> {
        let triple = |a: &str, b: &str, c: &str, row: &dyn Columns| {
            Ok((row.text(a)?, row.text(b)?, row.int(c)?))
        };
        let tokens = self
            .read_all(
                "SELECT workspace, id, last_used_at FROM scim_tokens WHERE last_used_at > $1",
                &[since.into()],
                |row| triple("workspace", "id", "last_used_at", row),
            )
            .await?;
        let connections = self
            .read_all(
                "SELECT workspace, connection, last_success_at FROM signin_stats \
                 WHERE last_success_at > $1",
                &[since.into()],
                |row| triple("workspace", "connection", "last_success_at", row),
            )
            .await?;
        Ok(UsageRows {
            tokens,
            connections,
        })
    }

    /// Records that a token was used; at most once a minute per token, so SCIM
    /// traffic does not turn every request into a write.
    pub async fn touch_token(&self, id: &str, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "UPDATE scim_tokens SET last_used_at = $2 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
            &[id.into(), now.into(), (now - 60_000).into()],
        )
        .await?;
        tx.commit().await
    }
}
