//! API keys through the admin API: issued for any principal of a workspace,
//! listed and revoked by id (`idsync admin keys …`).

use super::{Actor, AdminError, AdminService, Result, parse};
use crate::{
    admin::{ApiKeyRequest, ApiKeyView, IssuedApiKeyView},
    service::{
        api_keys::{IssueError, KeyRequest},
        store::{ApiKeyRecord, now_millis, timestamp},
    },
};

/// A stored key as the admin API and `/sso/keys` show it.
pub fn key_view(record: &ApiKeyRecord, now: i64) -> ApiKeyView {
    ApiKeyView {
        id: record.id.clone(),
        workspace: record.workspace.clone(),
        principal_id: record.principal_id.clone(),
        name: record.name.clone(),
        issued_by: record.issued_by.clone(),
        created_at: timestamp(record.created_at),
        expires_at: record.expires_at.map(timestamp),
        revoked_at: record.revoked_at.map(timestamp),
        last_used_at: record.last_used_at.map(timestamp),
        valid: record.is_valid_at(now),
    }
}

impl From<IssueError> for AdminError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Invalid(message) => AdminError::invalid(message),
            IssueError::NoPrincipal(who) => {
                AdminError::NotFound(format!("no active user or service account {who}"))
            }
            IssueError::Store(e) => AdminError::Store(e),
            // The OS random source failing is the service's trouble, not the
            // caller's: answered like an unreachable store.
            IssueError::Random(e) => AdminError::Store(
                crate::service::store::StoreError::NotCommitted(e.to_string()),
            ),
        }
    }
}

impl AdminService {
    /// Issues a key for the principal the body names; the answer is the only
    /// place its value appears.
    pub async fn issue_api_key(
        &self,
        workspace: &str,
        body: &[u8],
        actor: &Actor,
    ) -> Result<IssuedApiKeyView> {
        let req: ApiKeyRequest = parse(body)?;
        let who = req
            .principal
            .as_deref()
            .ok_or_else(|| AdminError::invalid("principal is required: a SCIM id or a userName"))?;
        self.require_workspace(workspace).await?;
        self.check_claim(workspace, actor, false).await?;
        let principal = self.store.member(workspace, who).await?.ok_or_else(|| {
            AdminError::NotFound(format!("no user or service account {who} in {workspace}"))
        })?;
        let now = now_millis();
        let issued_by = format!("admin/{}", actor.name);
        let issued = self
            .keys
            .issue(
                &KeyRequest {
                    workspace,
                    principal_id: &principal.id,
                    name: &req.name,
                    expires_at: req.expires_at.map(|t| t.as_millisecond()),
                    issued_by: &issued_by,
                    actor: &actor.name,
                },
                now,
            )
            .await?;
        Ok(IssuedApiKeyView {
            key: issued.key.expose().to_string(),
            view: key_view(&issued.record, now),
        })
    }

    /// A workspace's keys, or those of one principal (SCIM id or userName).
    pub async fn list_api_keys(
        &self,
        workspace: &str,
        principal: Option<&str>,
    ) -> Result<Vec<ApiKeyView>> {
        self.require_workspace(workspace).await?;
        let principal_id = match principal {
            Some(who) => match self.store.member(workspace, who).await? {
                Some(p) => Some(p.id),
                // A deleted principal's keys are still listed by its id.
                None => Some(who.to_string()),
            },
            None => None,
        };
        let now = now_millis();
        let keys = self.keys.list(workspace, principal_id.as_deref()).await?;
        Ok(keys.iter().map(|k| key_view(k, now)).collect())
    }

    /// Revokes a key by id; revoking an unknown or revoked key succeeds.
    pub async fn revoke_api_key(&self, workspace: &str, id: &str, actor: &Actor) -> Result<bool> {
        self.check_claim(workspace, actor, false).await?;
        Ok(self
            .keys
            .revoke(workspace, id, None, &actor.name, now_millis())
            .await?)
    }
}
