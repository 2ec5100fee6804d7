//! The admin service: what `/admin/v1` does, callable without HTTP.
//!
//! Every write is idempotent: a PUT whose fingerprint matches the stored one writes
//! nothing, not even an audit entry.

pub mod api_keys;
pub mod keys;
mod members;
pub mod validate;
mod webhooks;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::store::{
    self, AuditEntry, AuditFilter, AuditRecord, ObjectKind, PutOutcome, Store, StoreError,
    StoredObject, StoredToken, TokenPut, TokenRegistration, timestamp,
};
use crate::admin::{
    ObjectView, PutResult, RoleApprovalDoc, RoleMappingDoc, ScimTokenDoc, SsoConnectionDoc,
    TokenView, WebhookDoc, WorkspaceDoc,
};
use crate::{fingerprint::FingerprintKey, token};

/// Why an admin call failed. Messages say what is wrong and never echo secrets.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The workspace id belongs to another claimant.
    #[error("{0}")]
    Taken(String),
    /// The workspace already holds the one object of this kind it may have.
    #[error("{0}")]
    Occupied(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    fn invalid(message: impl Into<String>) -> Self {
        AdminError::Invalid {
            code: "invalid_body",
            message: message.into(),
        }
    }
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

/// Who is calling: the name the audit log shows, and the claimant it writes
/// for (a Workspace resource, or `admin/<name>`). A caller with the admin
/// token and no claimant acts as the administrator: claims neither bind nor
/// stop it.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub name: String,
    pub claimant: Option<String>,
}

impl Actor {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            claimant: None,
        }
    }
}

/// The namespace a claimant names (`kubernetes:<cluster>:<namespace>/<name>:<uid>`),
/// for messages; the claimant itself otherwise (`admin/<name>`).
pub fn claimant_owner(claimant: &str) -> String {
    match claimant
        .strip_prefix("kubernetes:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((_cluster, rest)) => {
            let object = rest.rsplit_once(':').map_or(rest, |(o, _uid)| o);
            match object.split_once('/') {
                Some((ns, name)) => format!("namespace {ns} (Workspace {name})"),
                None => object.to_string(),
            }
        }
        None => claimant.to_string(),
    }
}

/// The admin API's logic over the store.
#[derive(Clone, Debug)]
pub struct AdminService {
    store: Store,
    /// API keys of users and service accounts (also checked by `/sso`).
    keys: crate::service::api_keys::ApiKeys,
    public_url: String,
    /// Keys the fingerprints of stored documents (see [`crate::fingerprint`]).
    fingerprints: FingerprintKey,
}

/// Parses a JSON body into a document type, with a message that says where it is wrong.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." || path.is_empty() {
            format!("invalid body: {inner}")
        } else {
            format!("invalid body at {path}: {inner}")
        };
        AdminError::invalid(message)
    })
}

/// Removes secret values from a stored document before it leaves the service.
fn redact(kind: ObjectKind, mut body: serde_json::Value) -> serde_json::Value {
    if kind == ObjectKind::Webhook
        && let Some(doc) = body.as_object_mut()
        && let Some(serde_json::Value::Array(secrets)) = doc.remove("secrets")
    {
        doc.insert("secretsSet".into(), secrets.len().into());
    }
    if kind == ObjectKind::SsoConnection
        && let Some(oidc) = body.get_mut("oidc").and_then(|o| o.as_object_mut())
        && oidc.remove("clientSecret").is_some()
    {
        oidc.insert("clientSecretSet".into(), serde_json::Value::Bool(true));
    }
    body
}

impl AdminService {
    pub fn new(store: Store, public_url: impl Into<String>, fingerprints: FingerprintKey) -> Self {
        Self {
            keys: crate::service::api_keys::ApiKeys::new(store.clone()),
            store,
            public_url: public_url.into().trim_end_matches('/').to_string(),
            fingerprints,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn keys(&self) -> &crate::service::api_keys::ApiKeys {
        &self.keys
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// SCIM base URL of a workspace.
    pub fn scim_base_url(&self, workspace: &str) -> String {
        format!("{}/scim/v2/{workspace}", self.public_url)
    }

    /// URLs an IdP admin configures for an object.
    fn endpoints(&self, object: &StoredObject) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let ws = &object.workspace;
        match object.kind {
            ObjectKind::Workspace => {
                out.insert("scimBaseUrl".into(), self.scim_base_url(ws));
            }
            ObjectKind::SsoConnection => {
                let base = format!("{}/sso/{ws}", self.public_url);
                match object.body.get("protocol").and_then(|p| p.as_str()) {
                    Some("oidc") => {
                        out.insert(
                            "redirectUri".into(),
                            format!("{base}/oidc/{}/callback", object.name),
                        );
                    }
                    Some("saml") => {
                        let sp = format!("{base}/saml/{}", object.name);
                        out.insert("acsUrl".into(), format!("{sp}/acs"));
                        out.insert("spMetadataUrl".into(), format!("{sp}/metadata"));
                        out.insert("spEntityId".into(), sp);
                    }
                    _ => {}
                }
                out.insert("signInUrl".into(), format!("{base}/start"));
            }
            ObjectKind::RoleMapping | ObjectKind::RoleApproval | ObjectKind::Webhook => {}
        }
        out
    }

    fn view(&self, object: &StoredObject, result: Option<PutResult>) -> ObjectView {
        ObjectView {
            kind: object.kind.as_str().to_string(),
            workspace: object.workspace.clone(),
            name: object.name.clone(),
            fingerprint: object.fingerprint.clone(),
            created_at: timestamp(object.created_at),
            updated_at: timestamp(object.updated_at),
            result,
            spec: redact(object.kind, object.body.clone()),
            endpoints: self.endpoints(object),
            claimant: None,
        }
    }

    async fn require_workspace(&self, workspace: &str) -> Result<()> {
        validate::workspace_id(workspace).map_err(AdminError::NotFound)?;
        match self
            .store
            .get_object(ObjectKind::Workspace, workspace, workspace)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(AdminError::NotFound(format!(
                "unknown workspace {workspace:?}: create it first (PUT /admin/v1/workspaces/{workspace})"
            ))),
        }
    }

    /// A connection asserts emails of its domains, or of the workspace's when it
    /// declares none; with neither, it could sign anyone in as anyone.
    async fn require_asserted_domains(
        &self,
        workspace: &str,
        doc: &serde_json::Value,
    ) -> Result<()> {
        let declares =
            |v: &serde_json::Value| v["domains"].as_array().is_some_and(|d| !d.is_empty());
        if declares(doc) {
            return Ok(());
        }
        let ws = self
            .store
            .get_object(ObjectKind::Workspace, workspace, workspace)
            .await?;
        if ws.is_some_and(|w| declares(&w.body)) {
            return Ok(());
        }
        Err(AdminError::invalid(
            "the connection lists no domains and neither does its workspace, so it could assert \
             any email address: list the domains it signs people in for (spec.domains of the \
             SSOConnection or of the Workspace)",
        ))
    }

    /// Validates a body for its kind and returns it in canonical form.
    fn canonical(kind: ObjectKind, body: &[u8]) -> Result<serde_json::Value> {
        fn checked<T: DeserializeOwned + serde::Serialize>(
            body: &[u8],
            check: impl Fn(&T) -> std::result::Result<(), String>,
        ) -> Result<serde_json::Value> {
            let doc: T = parse(body)?;
            check(&doc).map_err(AdminError::invalid)?;
            serde_json::to_value(&doc).map_err(|e| AdminError::invalid(e.to_string()))
        }
        match kind {
            ObjectKind::Workspace => checked::<WorkspaceDoc>(body, validate::workspace),
            ObjectKind::SsoConnection => {
                checked::<SsoConnectionDoc>(body, validate::sso_connection)
            }
            ObjectKind::RoleMapping => checked::<RoleMappingDoc>(body, validate::role_mapping),
            ObjectKind::RoleApproval => checked::<RoleApprovalDoc>(body, validate::role_approval),
            ObjectKind::Webhook => checked::<WebhookDoc>(body, validate::webhook),
        }
    }

    /// Creates or replaces an object. For a workspace, `name` is the workspace id.
    pub async fn put(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
        body: &[u8],
        actor: &Actor,
    ) -> Result<ObjectView> {
        validate::workspace_id(workspace).map_err(AdminError::invalid)?;
        validate::object_name(name).map_err(AdminError::invalid)?;
        let doc = Self::canonical(kind, body)?;
        if kind != ObjectKind::Workspace {
            self.require_workspace(workspace).await?;
        }
        self.check_claim(workspace, actor, true).await?;
        if kind == ObjectKind::SsoConnection {
            self.require_asserted_domains(workspace, &doc).await?;
        }
        let fingerprint = self.fingerprints.of_value(&doc);
        let audit = AuditEntry {
            workspace: Some(workspace.to_string()),
            actor: actor.name.clone(),
            action: String::new(),
            kind: Some(kind.as_str().to_string()),
            name: Some(name.to_string()),
            detail: Some(serde_json::json!({ "fingerprint": fingerprint })),
        };
        // The action depends on whether the object exists; the store decides inside
        // its transaction, so record it as "applied" with the outcome beside it.
        let outcome = self
            .store
            .put_object(
                kind,
                workspace,
                name,
                &doc,
                &fingerprint,
                AuditEntry {
                    action: format!("{}.applied", kind.as_str()),
                    ..audit
                },
            )
            .await?;
        let (result, object) = match &outcome {
            PutOutcome::Created(o) => (PutResult::Created, o),
            PutOutcome::Updated(o) => (PutResult::Updated, o),
            PutOutcome::Unchanged(o) => (PutResult::Unchanged, o),
            PutOutcome::Occupied(holder) => {
                return Err(AdminError::Occupied(format!(
                    "workspace {workspace} already has {} {holder:?}, which decides every role; \
                     change that one, or delete it first",
                    kind.as_str()
                )));
            }
        };
        Ok(self.view(object, Some(result)))
    }

    pub async fn get(&self, kind: ObjectKind, workspace: &str, name: &str) -> Result<ObjectView> {
        match self.store.get_object(kind, workspace, name).await? {
            Some(object) => Ok(ObjectView {
                claimant: self.store.workspace_claimant(workspace).await?,
                ..self.view(&object, None)
            }),
            None => Err(AdminError::NotFound(format!(
                "{} {workspace}/{name} not found",
                kind.as_str()
            ))),
        }
    }

    pub async fn list(&self, kind: ObjectKind, workspace: Option<&str>) -> Result<Vec<ObjectView>> {
        if let Some(ws) = workspace
            && kind != ObjectKind::Workspace
        {
            self.require_workspace(ws).await?;
        }
        let objects = self.store.list_objects(kind, workspace).await?;
        Ok(objects.iter().map(|o| self.view(o, None)).collect())
    }

    /// Deletes an object. Deleting what is already gone succeeds (the caller's goal
    /// holds), so finalizers never wedge. A workspace with dependents is refused
    /// unless `cascade`.
    pub async fn delete(
        &self,
        kind: ObjectKind,
        workspace: &str,
        name: &str,
        cascade: bool,
        actor: &Actor,
    ) -> Result<bool> {
        self.check_claim(workspace, actor, false).await?;
        if kind == ObjectKind::Workspace && !cascade {
            let dependents = self.store.count_dependents(workspace).await?;
            if dependents > 0 {
                return Err(AdminError::Conflict(format!(
                    "workspace {workspace:?} still has {dependents} connections, role mappings or valid SCIM tokens; delete them first or pass cascade=true"
                )));
            }
        }
        let audit = AuditEntry {
            workspace: Some(workspace.to_string()),
            actor: actor.name.clone(),
            action: format!("{}.deleted", kind.as_str()),
            kind: Some(kind.as_str().to_string()),
            name: Some(name.to_string()),
            detail: cascade.then(|| serde_json::json!({ "cascade": true })),
        };
        let deleted = self
            .store
            .delete_object(kind, workspace, name, cascade, audit)
            .await?;
        if kind == ObjectKind::Workspace {
            // The id is free again once its workspace is gone.
            let entry = self.release_entry(workspace, actor, "deleted");
            self.store
                .release_workspace(workspace, &entry, store::now_millis())
                .await?;
        }
        Ok(deleted)
    }

    /// Refuses a write to a workspace another claimant owns (claiming a free
    /// one for the caller when `claim_if_free`). Callers without a claimant
    /// act as the administrator.
    async fn check_claim(&self, workspace: &str, actor: &Actor, claim_if_free: bool) -> Result<()> {
        let Some(claimant) = &actor.claimant else {
            return Ok(());
        };
        let owner = if claim_if_free {
            Some(
                self.store
                    .claim_workspace(workspace, claimant, store::now_millis())
                    .await?,
            )
        } else {
            self.store.workspace_claimant(workspace).await?
        };
        match owner {
            Some(owner) if &owner != claimant => Err(AdminError::Taken(format!(
                "workspace {workspace} is claimed by {}; choose another spec.workspaceId, or \
                 release the claim if its owner is gone for good (idsync admin workspace release \
                 {workspace})",
                claimant_owner(&owner)
            ))),
            _ => Ok(()),
        }
    }

    fn release_entry(&self, workspace: &str, actor: &Actor, why: &str) -> AuditEntry {
        AuditEntry {
            workspace: Some(workspace.to_string()),
            actor: actor.name.clone(),
            action: "workspace.released".into(),
            kind: Some("Workspace".into()),
            name: Some(workspace.to_string()),
            detail: Some(serde_json::json!({ "why": why })),
        }
    }

    /// Frees a workspace id whose owner is gone for good (`idsync admin
    /// workspace release`), or that its owner gives up (the finalizer of a
    /// retained Workspace). Only the owner or an administrator may.
    pub async fn release(&self, workspace: &str, actor: &Actor) -> Result<bool> {
        validate::workspace_id(workspace).map_err(AdminError::NotFound)?;
        self.check_claim(workspace, actor, false).await?;
        let entry = self.release_entry(workspace, actor, "released");
        Ok(self
            .store
            .release_workspace(workspace, &entry, store::now_millis())
            .await?)
    }

    /// The claimant that owns a workspace id, if any.
    pub async fn claimant(&self, workspace: &str) -> Result<Option<String>> {
        Ok(self.store.workspace_claimant(workspace).await?)
    }

    fn token_view(&self, t: &StoredToken, result: Option<PutResult>) -> TokenView {
        TokenView {
            id: t.id.clone(),
            workspace: t.workspace.clone(),
            name: t.name.clone(),
            authentication: t.scheme,
            sha256: t.hash.clone(),
            created_at: timestamp(t.created_at),
            expires_at: t.expires_at.map(timestamp),
            revoked_at: t.revoked_at.map(timestamp),
            last_used_at: t.last_used_at.map(timestamp),
            valid: t.is_valid_at(store::now_millis()),
            result,
            scim_base_url: self.scim_base_url(&t.workspace),
        }
    }

    /// Registers a SCIM token's hash under its public id.
    pub async fn put_token(
        &self,
        workspace: &str,
        id: &str,
        body: &[u8],
        actor: &Actor,
    ) -> Result<TokenView> {
        let doc: ScimTokenDoc = parse(body)?;
        if doc
            .sha256
            .as_deref()
            .is_some_and(|h| !token::is_sha256_hex(h))
        {
            return Err(AdminError::invalid(
                "sha256 must be the lower-case hex SHA-256 of the token (64 characters)",
            ));
        }
        if id.len() != 16
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(AdminError::invalid(format!(
                "token id {id:?} is not a token id (16 lower-case letters and digits)"
            )));
        }
        validate::object_name(&doc.name).map_err(AdminError::invalid)?;
        let expires_at = doc.expires_at.map(|t| t.as_millisecond());
        self.require_workspace(workspace).await?;
        self.check_claim(workspace, actor, true).await?;
        let reg = TokenRegistration {
            id: id.to_string(),
            workspace: workspace.to_string(),
            name: doc.name.clone(),
            scheme: doc.authentication.unwrap_or_default(),
            hash: doc.sha256,
            expires_at,
        };
        let audit = AuditEntry {
            workspace: Some(workspace.to_string()),
            actor: actor.name.clone(),
            action: "scim-token.registered".into(),
            kind: Some("scim-token".into()),
            name: Some(doc.name),
            detail: Some(serde_json::json!({ "tokenId": id, "expiresAt": doc.expires_at })),
        };
        match self.store.put_token(&reg, audit).await? {
            TokenPut::Created(t) => Ok(self.token_view(&t, Some(PutResult::Created))),
            TokenPut::Updated(t) => Ok(self.token_view(&t, Some(PutResult::Updated))),
            TokenPut::Unchanged(t) => Ok(self.token_view(&t, Some(PutResult::Unchanged))),
            TokenPut::Conflict => Err(AdminError::Conflict(format!(
                "token id {id} is already registered with another hash or workspace; generate a new token"
            ))),
            TokenPut::Missing => Err(AdminError::NotFound(format!(
                "SCIM token {id} is not registered; send sha256 to register it"
            ))),
        }
    }

    pub async fn get_token(&self, workspace: &str, id: &str) -> Result<TokenView> {
        match self.store.get_token(id).await? {
            Some(t) if t.workspace == workspace => Ok(self.token_view(&t, None)),
            _ => Err(AdminError::NotFound(format!(
                "SCIM token {id} not found in workspace {workspace:?}"
            ))),
        }
    }

    pub async fn list_tokens(&self, workspace: &str) -> Result<Vec<TokenView>> {
        self.require_workspace(workspace).await?;
        let tokens = self.store.list_tokens(workspace).await?;
        Ok(tokens.iter().map(|t| self.token_view(t, None)).collect())
    }

    /// Revokes a token. Revoking an unknown or already revoked token succeeds.
    pub async fn revoke_token(&self, workspace: &str, id: &str, actor: &Actor) -> Result<bool> {
        self.check_claim(workspace, actor, false).await?;
        let audit = AuditEntry {
            workspace: Some(workspace.to_string()),
            actor: actor.name.clone(),
            action: "scim-token.revoked".into(),
            kind: Some("scim-token".into()),
            name: None,
            detail: Some(serde_json::json!({ "tokenId": id })),
        };
        Ok(self.store.revoke_token(workspace, id, audit).await?)
    }

    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        Ok(self.store.query_audit(filter).await?)
    }
}
