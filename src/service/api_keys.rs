//! API keys: long-lived bearer credentials of a user or service account that
//! the product checks exactly as it checks a session (`GET /sso/session`).
//!
//! A key is generated here and shown once; the store keeps its SHA-256 (see
//! [`crate::token`]). Issued through the admin API for any principal, or by a
//! signed-in person for themselves ("personal access tokens"). A check reads
//! the key and its principal in one point read, so a revoked key, an expired
//! one, or one whose principal SCIM deactivated fails on the very next check:
//! nothing is cached.

use std::time::Duration;

use crate::{
    service::store::{
        ApiKeyRecord, AuditEntry, KeyRefused, LiveApiKey, MAX_LIVE_KEYS, Result as StoreResult,
        Store, StoreError,
    },
    token::{self, GeneratedToken},
};

/// Longest lifetime of a key a person issues themselves, and what they get
/// when they ask for none: an administrator may issue keys that never expire,
/// a session may not mint a credential that outlives every deprovisioning
/// check it could be caught by.
pub const SELF_ISSUED_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
pub const SELF_ISSUED_DEFAULT: Duration = Duration::from_secs(90 * 24 * 3600);

/// `last_used_at` is written at most this often per key: a product checks a
/// key on every request, and a write per check would be the check's cost.
const LAST_USED_EVERY_MS: i64 = 60_000;

/// Most characters of a key's name.
pub const MAX_NAME: usize = 128;

/// What issuing a key needs.
#[derive(Debug, Clone)]
pub struct KeyRequest<'a> {
    pub workspace: &'a str,
    pub principal_id: &'a str,
    pub name: &'a str,
    pub expires_at: Option<i64>,
    /// `admin/<actor>` or `self`.
    pub issued_by: &'a str,
    /// Who the audit log names.
    pub actor: &'a str,
}

/// A key just issued: the value (shown once) and what is stored.
pub struct IssuedKey {
    pub key: GeneratedToken,
    pub record: ApiKeyRecord,
}

/// Why a key was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Invalid(String),
    /// The principal is missing, deleted or deactivated.
    #[error("no active principal {0} in this workspace")]
    NoPrincipal(String),
    #[error(transparent)]
    Random(#[from] token::RandomError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// API keys over the store.
#[derive(Clone, Debug)]
pub struct ApiKeys {
    store: Store,
}

fn audit(
    workspace: &str,
    actor: &str,
    action: &str,
    id: &str,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        workspace: Some(workspace.to_string()),
        actor: actor.to_string(),
        action: action.to_string(),
        kind: Some("api-key".into()),
        name: Some(id.to_string()),
        detail: Some(detail),
    }
}

impl ApiKeys {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Issues a key for a live, active principal.
    pub async fn issue(&self, req: &KeyRequest<'_>, now: i64) -> Result<IssuedKey, IssueError> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(IssueError::Invalid(format!(
                "a key's name must be 1 to {MAX_NAME} printable characters"
            )));
        }
        if req.expires_at.is_some_and(|e| e <= now) {
            return Err(IssueError::Invalid(
                "expiresAt must be in the future".into(),
            ));
        }
        let key = token::API_KEY.generate()?;
        let record = ApiKeyRecord {
            id: key.id.clone(),
            workspace: req.workspace.to_string(),
            principal_id: req.principal_id.to_string(),
            name: name.to_string(),
            issued_by: req.issued_by.to_string(),
            created_at: now,
            expires_at: req.expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let detail = serde_json::json!({
            "principal": req.principal_id, "name": name, "issuedBy": req.issued_by,
            "expiresAt": req.expires_at.map(crate::service::store::format_millis),
        });
        let entry = audit(req.workspace, req.actor, "api-key.issued", &key.id, detail);
        match self
            .store
            .insert_api_key(&record, &key.hash(), &entry)
            .await?
        {
            Ok(()) => {}
            Err(KeyRefused::NoPrincipal) => {
                return Err(IssueError::NoPrincipal(req.principal_id.to_string()));
            }
            Err(KeyRefused::TooMany) => {
                return Err(IssueError::Invalid(format!(
                    "{} already holds {MAX_LIVE_KEYS} live keys: revoke one first",
                    req.principal_id
                )));
            }
        }
        Ok(IssuedKey { key, record })
    }

    /// A workspace's keys, or one principal's.
    pub async fn list(
        &self,
        workspace: &str,
        principal_id: Option<&str>,
    ) -> StoreResult<Vec<ApiKeyRecord>> {
        self.store.api_keys(workspace, principal_id).await
    }

    /// Revokes a key of `workspace` (of `principal_id` only, when given: a
    /// person revoking their own). `false` when there is no such live key.
    pub async fn revoke(
        &self,
        workspace: &str,
        id: &str,
        principal_id: Option<&str>,
        actor: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let entry = audit(
            workspace,
            actor,
            "api-key.revoked",
            id,
            serde_json::json!({}),
        );
        self.store
            .revoke_api_key(workspace, id, principal_id, &entry, now)
            .await
    }

    /// The key `presented` names, if it is live and matches (compared in
    /// constant time), with its principal's role and assignments now.
    pub async fn check(&self, presented: &str, now: i64) -> StoreResult<Option<LiveApiKey>> {
        let Some(id) = token::API_KEY.parse_id(presented) else {
            return Ok(None);
        };
        let Some(key) = self.store.live_api_key(id, now).await? else {
            return Ok(None);
        };
        if !token::matches(presented, &key.hash) {
            return Ok(None);
        }
        if key
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_EVERY_MS)
        {
            // Bookkeeping: a failure to record use must not fail the check.
            if let Err(e) = self.store.touch_api_key(&key.id, now).await {
                tracing::warn!(key = %key.id, error = %e, "could not record an API key's use");
            }
        }
        Ok(Some(key))
    }
}

/// When a key a person issues themselves expires: when they asked, if that
/// is within [`SELF_ISSUED_MAX`], else [`SELF_ISSUED_DEFAULT`] from now.
pub fn self_issued_expiry(asked: Option<i64>, now: i64) -> Result<i64, IssueError> {
    let max = now + SELF_ISSUED_MAX.as_millis() as i64;
    match asked {
        None => Ok(now + SELF_ISSUED_DEFAULT.as_millis() as i64),
        Some(at) if at > max => Err(IssueError::Invalid(format!(
            "a key you issue yourself lives at most {} days; ask for an earlier expiresAt",
            SELF_ISSUED_MAX.as_secs() / 86_400
        ))),
        Some(at) => Ok(at),
    }
}

/// Whether a presented bearer credential is an API key (rather than a
/// session cookie's value).
pub fn is_api_key(presented: &str) -> bool {
    presented.starts_with(token::API_KEY_PREFIX)
}
