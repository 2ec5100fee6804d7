//! Sign-in state in the store: requests in flight, the SAML replay cache,
//! sessions, session-cookie keys and per-connection health. Everything a second
//! replica must see lives here, never in one process's memory. Every write goes
//! through `begin_write` (the group-commit writer on SQLite).

use sqlx::Row;

use super::{AuditEntry, Result, Store, audit, columns::Columns};

/// A sign-in this service started and has not finished yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRequest {
    /// SHA-256 (hex) of the handle the browser carries (OIDC `state`, SAML RelayState).
    pub id: String,
    pub workspace: String,
    pub connection: String,
    pub protocol: String,
    /// OIDC `nonce` the ID token must echo.
    pub nonce: Option<String>,
    /// OIDC PKCE verifier.
    pub code_verifier: Option<String>,
    /// SAML AuthnRequest ID the response must answer (`InResponseTo`).
    pub request_id: Option<String>,
    /// Where the browser goes after signing in (a local path).
    pub return_to: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A live session with its user, as the session check answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub workspace: String,
    pub user_id: String,
    pub user_name: String,
    pub role: Option<String>,
    /// Effective role assignments, as stored (JSON `[{type, value}]`).
    pub assignments: Option<String>,
    pub connection: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A session-cookie key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub id: String,
    /// The raw HMAC key, hex-encoded.
    pub secret: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A SAML SP signing key as stored (see [`crate::saml_signing`]). Not `Debug`:
/// it holds a private key.
#[derive(Clone)]
pub struct SamlSigningKeyRecord {
    pub id: String,
    pub private_key_pem: String,
    pub certificate_pem: String,
    pub created_at: i64,
    /// The certificate's notAfter.
    pub expires_at: i64,
}

/// Sign-in health of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignInStats {
    pub successes: i64,
    pub failures: i64,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub last_failure_reason: Option<String>,
}

/// How a user row matched a signed-in email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserMatch {
    /// Visible user: id, active.
    Found {
        id: String,
        active: bool,
    },
    /// Only a deleted (SCIM `DELETE`, soft) user has this email.
    Deleted,
    /// Several visible users carry this email; refusing beats guessing.
    Ambiguous,
    NotFound,
}

impl Store {
    /// Records a sign-in in flight, and drops the ones that expired unused.
    pub async fn put_signin_request(&self, r: &SignInRequest) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "DELETE FROM signin_requests WHERE expires_at < $1",
            &[r.created_at.into()],
        )
        .await?;
        tx.execute(
            "INSERT INTO signin_requests (id, workspace, connection, protocol, nonce, \
             code_verifier, request_id, return_to, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                (&r.id).into(),
                (&r.workspace).into(),
                (&r.connection).into(),
                (&r.protocol).into(),
                (&r.nonce).into(),
                (&r.code_verifier).into(),
                (&r.request_id).into(),
                (&r.return_to).into(),
                r.created_at.into(),
                r.expires_at.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a sign-in request out of the store: a second callback with the same
    /// handle finds nothing, so a request completes at most once.
    pub async fn take_signin_request(&self, id: &str, now: i64) -> Result<Option<SignInRequest>> {
        let mut tx = self.begin_write().await?;
        let request = tx
            .fetch_optional(
                "DELETE FROM signin_requests WHERE id = $1 RETURNING workspace, connection, \
                 protocol, nonce, code_verifier, request_id, return_to, created_at, expires_at",
                &[id.into()],
                |row| {
                    Ok(SignInRequest {
                        id: id.to_string(),
                        workspace: row.text("workspace")?,
                        connection: row.text("connection")?,
                        protocol: row.text("protocol")?,
                        nonce: row.opt_text("nonce")?,
                        code_verifier: row.opt_text("code_verifier")?,
                        request_id: row.opt_text("request_id")?,
                        return_to: row.text("return_to")?,
                        created_at: row.int("created_at")?,
                        expires_at: row.int("expires_at")?,
                    })
                },
            )
            .await?;
        tx.commit().await?;
        Ok(request.filter(|r| r.expires_at >= now))
    }

    /// Deletes sign-in state that can no longer be used: requests and replay
    /// cache entries past their expiry, and sessions a day past theirs (the
    /// day keeps a just-expired session explainable). Answers the rows gone.
    pub async fn prune_signin_state(&self, now: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut gone = 0;
        for sql in [
            "DELETE FROM signin_requests WHERE expires_at < $1",
            "DELETE FROM saml_replay_cache WHERE expires_at < $1",
        ] {
            gone += tx.execute(sql, &[now.into()]).await?;
        }
        gone += tx
            .execute(
                "DELETE FROM sessions WHERE expires_at < $1",
                &[(now - 24 * 3600 * 1000).into()],
            )
            .await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// Remembers a consumed assertion ID until `expires_at`; false when it was
    /// already consumed (a replay), on this replica or any other.
    pub async fn remember_assertion(&self, id: &str, now: i64, expires_at: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "DELETE FROM saml_replay_cache WHERE expires_at < $1",
            &[now.into()],
        )
        .await?;
        let inserted = tx
            .execute(
                "INSERT INTO saml_replay_cache (id, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (id) DO NOTHING",
                &[id.into(), expires_at.into()],
            )
            .await?;
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// Counts a sign-in outcome for a connection's health.
    pub async fn record_signin_outcome(
        &self,
        workspace: &str,
        connection: &str,
        failure_reason: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let (ok, failed) = if failure_reason.is_some() {
            (0i64, 1i64)
        } else {
            (1, 0)
        };
        let mut tx = self.begin_write().await?;
        let success_at = failure_reason.is_none().then_some(now);
        let failure_at = failure_reason.is_some().then_some(now);
        tx.execute(
            "INSERT INTO signin_stats (workspace, connection, successes, failures, last_success_at, \
             last_failure_at, last_failure_reason) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (workspace, connection) DO UPDATE SET \
             successes = signin_stats.successes + $3, failures = signin_stats.failures + $4, \
             last_success_at = COALESCE($5, signin_stats.last_success_at), \
             last_failure_at = COALESCE($6, signin_stats.last_failure_at), \
             last_failure_reason = COALESCE($7, signin_stats.last_failure_reason)",
            &[
                workspace.into(),
                connection.into(),
                ok.into(),
                failed.into(),
                success_at.into(),
                failure_at.into(),
                failure_reason.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn signin_stats(&self, workspace: &str, connection: &str) -> Result<SignInStats> {
        let row = sqlx::query(
            "SELECT successes, failures, last_success_at, last_failure_at, last_failure_reason \
             FROM signin_stats WHERE workspace = $1 AND connection = $2",
        )
        .bind(workspace)
        .bind(connection)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(SignInStats::default());
        };
        Ok(SignInStats {
            successes: r.try_get("successes")?,
            failures: r.try_get("failures")?,
            last_success_at: r.try_get("last_success_at")?,
            last_failure_at: r.try_get("last_failure_at")?,
            last_failure_reason: r.try_get("last_failure_reason")?,
        })
    }

    /// The user an email signs in as: by `userName`, else by a work email.
    pub async fn find_user_by_email(&self, workspace: &str, email: &str) -> Result<UserMatch> {
        let key = email.to_lowercase();
        let args = [workspace.into(), key.as_str().into()];
        let found = |row: &dyn Columns| {
            Ok(UserMatch::Found {
                id: row.text("id")?,
                active: row.int("active")? != 0,
            })
        };
        // Each is an index probe: a point read.
        let by_name = self
            .read_optional(
                "SELECT id, active FROM scim_resources WHERE workspace = $1 AND kind = 'User' \
                 AND name_key = $2 AND deleted_at IS NULL",
                &args,
                found,
            )
            .await?;
        if let Some(user) = by_name {
            return Ok(user);
        }
        let mut by_email = self
            .read_all(
                "SELECT DISTINCT r.id, r.active FROM scim_resources r \
                 JOIN scim_values v ON v.resource_pk = r.pk \
                 WHERE r.workspace = $1 AND r.kind = 'User' AND r.deleted_at IS NULL \
                 AND v.path = 'emails.value' AND v.v_lower = $2 LIMIT 2",
                &args,
                found,
            )
            .await?;
        if by_email.len() > 1 {
            return Ok(UserMatch::Ambiguous);
        }
        if let Some(user) = by_email.pop() {
            return Ok(user);
        }
        let deleted = self
            .read_optional(
                "SELECT pk FROM scim_resources WHERE workspace = $1 AND kind = 'User' \
                 AND name_key = $2 AND deleted_at IS NOT NULL LIMIT 1",
                &args,
                |row| row.int("pk"),
            )
            .await?;
        Ok(if deleted.is_some() {
            UserMatch::Deleted
        } else {
            UserMatch::NotFound
        })
    }

    /// Sessions of a user that are neither revoked nor expired.
    pub async fn live_sessions(&self, workspace: &str, user_id: &str) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE workspace = $1 AND user_id = $2 \
             AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(workspace)
        .bind(user_id)
        .bind(super::now_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Records a session (the sign-in flow creates them).
    pub async fn create_session(
        &self,
        id: &str,
        workspace: &str,
        user_id: &str,
        role: Option<&str>,
        expires_at: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "INSERT INTO sessions (id, workspace, user_id, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                id.into(),
                workspace.into(),
                user_id.into(),
                role.into(),
                super::now_millis().into(),
                expires_at.into(),
            ],
        )
        .await?;
        tx.commit().await
    }

    /// Creates a session; `id` is the SHA-256 of the cookie's secret part.
    pub async fn insert_session(
        &self,
        id: &str,
        session: &SessionRecord,
        entry: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "INSERT INTO sessions (id, workspace, user_id, role, connection, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                id.into(),
                (&session.workspace).into(),
                (&session.user_id).into(),
                (&session.role).into(),
                (&session.connection).into(),
                session.created_at.into(),
                session.expires_at.into(),
            ],
        )
        .await?;
        audit::insert(&mut tx, entry, session.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A session that is neither revoked nor expired, of a user who is still
    /// active: deprovisioning ends sessions even if a revocation were missed.
    pub async fn live_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>> {
        // A primary-key probe and one joined row: a point read. Every
        // request the product checks a session for comes here. The role is
        // the user's now, not the one they signed in with: a SCIM membership
        // or RoleMapping change shows on the next check.
        self.read_optional(
            concat!(
                "SELECT s.workspace, s.user_id, r.role, r.assignments, s.connection, s.created_at, \
                 s.expires_at, r.name_key FROM sessions s JOIN scim_resources r \
                 ON r.workspace = s.workspace AND r.id = s.user_id AND r.kind = 'User' \
                 WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND ",
                admitted!("r")
            ),
            &[id.into(), now.into()],
            |row| {
                Ok(SessionRecord {
                    workspace: row.text("workspace")?,
                    user_id: row.text("user_id")?,
                    user_name: row.text("name_key")?,
                    role: row.opt_text("role")?,
                    assignments: row.opt_text("assignments")?,
                    connection: row.opt_text("connection")?,
                    created_at: row.int("created_at")?,
                    expires_at: row.int("expires_at")?,
                })
            },
        )
        .await
    }

    /// Ends one session (sign-out); returns whether it was live.
    pub async fn revoke_session(&self, id: &str, entry: &AuditEntry, now: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = tx
            .execute(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                &[now.into(), id.into()],
            )
            .await?;
        if n > 0 {
            audit::insert(&mut tx, entry, now).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Session-cookie keys still valid for verification, newest first.
    pub async fn session_keys(&self, now: i64) -> Result<Vec<SessionKey>> {
        let rows = sqlx::query(
            "SELECT id, secret, created_at, expires_at FROM session_keys \
             WHERE expires_at > $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionKey {
                    id: r.try_get("id")?,
                    secret: r.try_get("secret")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Adds a session-cookie key (idempotent by id).
    pub async fn insert_session_key(&self, key: &SessionKey) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "INSERT INTO session_keys (id, secret, created_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
            &[
                (&key.id).into(),
                (&key.secret).into(),
                key.created_at.into(),
                key.expires_at.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// SAML SP signing keys whose certificates are unexpired, newest first.
    pub async fn saml_signing_keys(&self, now: i64) -> Result<Vec<SamlSigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT id, private_key_pem, certificate_pem, created_at, expires_at \
             FROM saml_signing_keys WHERE expires_at > $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SamlSigningKeyRecord {
                    id: r.try_get("id")?,
                    private_key_pem: r.try_get("private_key_pem")?,
                    certificate_pem: r.try_get("certificate_pem")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Adds a SAML SP signing key (idempotent by id: a key never changes).
    pub async fn insert_saml_signing_key(&self, key: &SamlSigningKeyRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        tx.execute(
            "INSERT INTO saml_signing_keys (id, private_key_pem, certificate_pem, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            &[
                (&key.id).into(),
                (&key.private_key_pem).into(),
                (&key.certificate_pem).into(),
                key.created_at.into(),
                key.expires_at.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
