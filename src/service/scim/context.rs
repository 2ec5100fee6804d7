//! Who is calling and for which workspace: bearer-token authentication and the
//! workspace settings every SCIM operation depends on.

use http::HeaderMap;

use super::error::ScimError;
use crate::{
    admin::WorkspaceDoc,
    api::{ScimAuthentication, WorkspacePolicy},
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

/// A SCIM credential as the request presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `Authorization: Basic …`, decoded: the client ID and the client secret
    /// (which is a whole token whose id is the client ID).
    Basic { client_id: &'a str, secret: &'a str },
}

impl<'a> Credential<'a> {
    /// The token and how it must have been registered, if it has a token's
    /// shape (and, for Basic, names its own client ID).
    fn token(self) -> Option<(&'a str, &'a str, ScimAuthentication)> {
        match self {
            Credential::Bearer(t) => Some((t, token::parse_id(t)?, ScimAuthentication::Bearer)),
            Credential::Basic { client_id, secret } => {
                let id = token::parse_id(secret).filter(|id| *id == client_id)?;
                Some((secret, id, ScimAuthentication::Basic))
            }
        }
    }
}

/// The `Authorization` header's credential. A bearer token is borrowed from
/// the header; a Basic pair is decoded into `decoded`, which the caller keeps
/// for the credential's lifetime.
pub fn presented_credential<'a>(
    headers: &'a HeaderMap,
    decoded: &'a mut String,
) -> Option<Credential<'a>> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then_some(Credential::Bearer(rest));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    *decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
    let (client_id, secret) = decoded.split_once(':')?;
    Some(Credential::Basic { client_id, secret })
}

/// Checks the credential of a SCIM request against the workspace's tokens
/// (several may be valid at once during a rotation), accepting each only the
/// way it was registered. The comparison is constant-time; failures say
/// only what the IdP admin can act on, and never whether the workspace
/// exists or which part of a credential was wrong.
pub async fn authenticate(
    store: &Store,
    workspace: &str,
    presented: Option<Credential<'_>>,
    request_id: Option<String>,
) -> Result<WorkspaceCtx, ScimError> {
    let presented = presented
        .ok_or_else(|| ScimError::unauthorized("missing bearer token or Basic credentials"))?;
    let refused = || ScimError::unauthorized("the credentials are not valid for this workspace");
    let (secret, id, scheme) = presented.token().ok_or_else(refused)?;
    let (stored, workspace_doc) = store
        .get_token_with_workspace(id)
        .await?
        .ok_or_else(refused)?;
    let now = now_millis();
    // Every check runs, so a wrong scheme costs what a wrong secret does.
    let matches = token::matches(secret, &stored.hash);
    if stored.workspace != workspace
        || !matches
        || stored.scheme != scheme
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
