//! Who is calling and for which workspace: bearer-token authentication and the
//! workspace settings every SCIM operation depends on.

use http::HeaderMap;

use super::error::ScimError;
use crate::{
    admin::WorkspaceDoc,
    api::WorkspacePolicy,
    scim::schema::{ResourceKind, SchemaSet},
    service::store::{ObjectKind, Store, StoreError, now_millis},
    token,
};

/// One authenticated SCIM request's view of its workspace.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceCtx {
    pub name: String,
    pub policy: WorkspacePolicy,
    /// The workspace's `defaultRole`, for people no mapping rule gives a role.
    pub default_role: Option<String>,
    /// Id (never the value) of the token that authenticated the request.
    pub token_id: String,
    /// The IdP's own id for the request, for the audit log.
    pub request_id: Option<String>,
    /// Who acts when it is not a SCIM token (sign-in's just-in-time provisioning).
    pub actor: Option<String>,
}

/// Headers IdPs put their request id in: Entra ID sends `client-request-id`.
const REQUEST_ID_HEADERS: &[&str] = &[
    "client-request-id",
    "x-ms-client-request-id",
    "x-request-id",
    "x-okta-request-id",
    "x-correlation-id",
];

/// The IdP's request id, if it sent one (trimmed to a sane length).
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    REQUEST_ID_HEADERS.iter().find_map(|h| {
        let v = headers.get(*h)?.to_str().ok()?.trim();
        (!v.is_empty()).then(|| v.chars().take(128).collect())
    })
}

impl WorkspaceCtx {
    /// The schemas this workspace accepts for `kind`.
    pub fn schemas(&self, kind: ResourceKind) -> SchemaSet {
        let declared = match kind {
            ResourceKind::User => self.policy.scim_schema_extensions.clone(),
            ResourceKind::Group | ResourceKind::ServiceAccount => Vec::new(),
        };
        SchemaSet::new(kind, declared)
    }

    pub fn hard_delete(&self) -> bool {
        self.policy.scim_hard_delete == Some(true)
    }

    /// The audit log's actor for this request.
    pub fn actor(&self) -> String {
        match &self.actor {
            Some(actor) => actor.clone(),
            None => format!("scim-token:{}", self.token_id),
        }
    }

    /// Loads a workspace's settings (tests and the bulk endpoint call this directly).
    pub async fn load(store: &Store, workspace: &str) -> Result<Option<Self>, StoreError> {
        let Some(object) = store
            .get_object(ObjectKind::Workspace, workspace, workspace)
            .await?
        else {
            return Ok(None);
        };
        let doc = serde_json::from_value(object.body).map_err(|e| corrupt(workspace, e))?;
        Ok(Some(Self::new(workspace, doc)))
    }

    /// A workspace's settings from its stored document (JSON text).
    fn from_document(workspace: &str, body: &str) -> Result<Self, StoreError> {
        let doc = serde_json::from_str(body).map_err(|e| corrupt(workspace, e))?;
        Ok(Self::new(workspace, doc))
    }

    fn new(workspace: &str, doc: WorkspaceDoc) -> Self {
        Self {
            name: workspace.to_string(),
            policy: doc.policy.unwrap_or_default(),
            default_role: doc.default_role,
            token_id: String::new(),
            request_id: None,
            actor: None,
        }
    }
}

fn corrupt(workspace: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        kind: "Workspace",
        workspace: workspace.to_string(),
        name: workspace.to_string(),
        message: e.to_string(),
    }
}

/// Checks the bearer token of a SCIM request against the workspace's tokens
/// (several may be valid at once during a rotation). The comparison is
/// constant-time; failures say only what the IdP admin can act on, and never
/// whether the workspace exists.
pub async fn authenticate(
    store: &Store,
    workspace: &str,
    presented: Option<&str>,
    request_id: Option<String>,
) -> Result<WorkspaceCtx, ScimError> {
    let presented = presented.ok_or_else(|| ScimError::unauthorized("missing bearer token"))?;
    let refused = || ScimError::unauthorized("the bearer token is not valid for this workspace");
    let id = token::parse_id(presented).ok_or_else(refused)?;
    let (stored, workspace_doc) = store
        .get_token_with_workspace(id)
        .await?
        .ok_or_else(refused)?;
    let now = now_millis();
    if stored.workspace != workspace
        || !token::matches(presented, &stored.hash)
        || !stored.is_valid_at(now)
    {
        return Err(refused());
    }
    let mut ctx = WorkspaceCtx::from_document(workspace, &workspace_doc.ok_or_else(refused)?)?;
    if ctx.policy.scim_enabled == Some(false) {
        return Err(ScimError::forbidden(
            "SCIM provisioning is disabled for this workspace (spec.policy.scimEnabled)",
        ));
    }
    // `lastUsedAt` is kept to the minute: skipping the write otherwise keeps
    // every read request off SQLite's write lock.
    if stored.last_used_at.is_none_or(|t| now - t >= 60_000)
        && let Err(e) = store.touch_token(&stored.id, now).await
    {
        tracing::warn!(error = %e, "could not record SCIM token use");
    }
    ctx.token_id = stored.id;
    ctx.request_id = request_id;
    Ok(ctx)
}
